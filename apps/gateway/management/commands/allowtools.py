"""Replace a member's allowlist: allowtools SLUG EMAIL SERVER:TOOL...

Each rule must name a server of the workspace and a tool it offers (as the upstream names
it or as clients see it); rules are stored as ``server:<upstream name>``.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.gateway.services import allowlist_set
from apps.workspaces.management.cli import one_line, operator_access, user_existing, workspace_active


class Command(BaseCommand):
    help = (
        "Replace a member's tool allowlist with SERVER:TOOL pairs (SERVER:* for every tool of a server). "
        "TOOL is the upstream name or the name clients see; the upstream name is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("email")
        parser.add_argument("rules", nargs="*", metavar="SERVER:TOOL", help="none: clear the allowlist")

    def handle(self, *args, slug: str, email: str, rules: list[str], **options) -> None:
        workspace = workspace_active(slug)
        member = user_existing(email)
        try:
            after = allowlist_set(access=operator_access(workspace), member=member, rules=rules)
        except RuleViolation as exc:
            raise CommandError(one_line(exc)) from None
        for warning in after.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        self.stdout.write(f"{member.email} in {workspace.slug}: {', '.join(after) or 'no rules (full access)'}")
