"""Revoke a gateway token by its display prefix: ``manage.py revoketoken SLUG PREFIX``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.tokens.selectors import token_find
from apps.tokens.services import token_revoke
from apps.workspaces.management.cli import operator_access, workspace_active


class Command(BaseCommand):
    help = "Revoke the token whose prefix (as shown in token lists, e.g. mng_3f9a1b2c) starts with PREFIX."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("prefix")

    def handle(self, *args, slug: str, prefix: str, **options) -> None:
        workspace = workspace_active(slug)
        try:
            token = token_find(workspace=workspace, prefix=prefix)
            revoked = token_revoke(access=operator_access(workspace), token=token)
        except RuleViolation as exc:
            raise CommandError(str(exc)) from None
        owner = f"of {token.user.email}" if token.user_id else "(workspace token)"
        label = f" “{token.name}”" if token.name else ""
        if revoked:
            self.stdout.write(f"Revoked {token.prefix}…{label} {owner} in {workspace.slug}.")
        else:
            self.stdout.write(f"{token.prefix}…{label} {owner} in {workspace.slug} was already revoked.")
