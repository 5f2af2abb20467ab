"""Set a workspace's allowlist enforcement: enforcement SLUG off|shadow|enforce."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.workspaces.management.cli import operator_access, workspace_active
from apps.workspaces.models import Enforcement
from apps.workspaces.services import GatewayPolicy, workspace_set_policy


class Command(BaseCommand):
    help = "off: allowlists not applied; shadow: calls pass, would-be blocks recorded; enforce: only allowed tools."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("mode", choices=Enforcement.values)

    def handle(self, *args, slug: str, mode: str, **options) -> None:
        workspace = workspace_set_policy(
            access=operator_access(workspace_active(slug)), policy=GatewayPolicy(enforcement=mode)
        )
        self.stdout.write(f"{workspace.slug}: enforcement {workspace.enforcement}")
