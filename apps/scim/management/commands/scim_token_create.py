"""Issue a workspace's SCIM token from the shell. Only the raw token goes to stdout, so
scripts can capture it (``TOKEN=$(manage.py scim_token_create acme --name Entra)``); notes
go to stderr."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.scim.services import scim_token_create
from apps.workspaces.management.cli import operator_access, workspace_active


class Command(BaseCommand):
    help = "Issue a SCIM token for a workspace's identity provider; prints the token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="a label such as 'Entra ID' or 'Okta'")

    def handle(self, *args, slug: str, name: str, **options) -> None:
        workspace = workspace_active(slug)
        try:
            issued = scim_token_create(access=operator_access(workspace), name=name)
        except RuleViolation as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Issued SCIM token {issued.token.prefix}… for {workspace.slug}. It is shown once; store it now. "
            "Base URL: https://<your host>/scim/v2/"
        )
        self.stdout.write(issued.raw)
