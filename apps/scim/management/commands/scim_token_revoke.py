"""Revoke a workspace's SCIM token by its display prefix (as the admin lists it)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.scim.models import ScimToken
from apps.scim.services import scim_token_revoke
from apps.workspaces.management.cli import operator_access, workspace_active


class Command(BaseCommand):
    help = "Revoke a workspace's SCIM token, named by its prefix (mns_…)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("prefix")

    def handle(self, *args, slug: str, prefix: str, **options) -> None:
        workspace = workspace_active(slug)
        prefix = prefix.strip().rstrip("…")
        tokens = list(ScimToken.objects.filter(workspace=workspace, prefix__startswith=prefix)[:2]) if prefix else []
        if len(tokens) != 1:
            raise CommandError(f"{'No' if not tokens else 'More than one'} SCIM token of {slug} matches {prefix!r}.")
        try:
            revoked = scim_token_revoke(access=operator_access(workspace), token=tokens[0])
        except RuleViolation as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Revoked {tokens[0].prefix}…." if revoked else f"{tokens[0].prefix}… was already revoked.")
