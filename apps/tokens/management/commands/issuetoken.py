"""Issue a gateway token from the shell. Only the raw token goes to stdout, so scripts can
capture it (``TOKEN=$(manage.py issuetoken acme --member a@b.c)``); notes go to stderr."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from apps.workspaces.management.cli import operator_access, user_existing, workspace_active


class Command(BaseCommand):
    help = "Issue a member token (--member EMAIL) or a workspace token; prints the token once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--member", metavar="EMAIL", help="issue a member token acting as this member")
        parser.add_argument("--name", default="", help="a label such as 'laptop' or 'CI'")
        parser.add_argument("--expires-days", type=int, default=None, metavar="N")

    def handle(self, *args, slug: str, member: str | None, name: str, expires_days: int | None, **options) -> None:
        workspace = workspace_active(slug)
        user = user_existing(member) if member else None
        kind = GatewayToken.Kind.MEMBER if user else GatewayToken.Kind.WORKSPACE
        try:
            issued = token_create(
                access=operator_access(workspace), member=user, name=name, expires_days=expires_days, kind=kind
            )
        except RuleViolation as exc:
            raise CommandError(str(exc)) from None
        who = f"acting as {user.email}" if user else "with full access"
        self.stderr.write(
            f"Issued {issued.token.get_kind_display().lower()} {issued.token.prefix}… in {workspace.slug} {who}. "
            "It is shown once; store it now."
        )
        self.stdout.write(issued.raw)
