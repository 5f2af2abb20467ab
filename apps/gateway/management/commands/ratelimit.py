"""Set the gateway's per-client-IP rate limit for a workspace: ratelimit SLUG PER_MINUTE."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.workspaces.management.cli import one_line, operator_access, workspace_active
from apps.workspaces.services import GatewayPolicy, workspace_set_policy


class Command(BaseCommand):
    help = "Requests per minute per client IP on /api/gw/SLUG (over it: HTTP 429 with Retry-After)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("per_minute", type=int)

    def handle(self, *args, slug: str, per_minute: int, **options) -> None:
        try:
            workspace = workspace_set_policy(
                access=operator_access(workspace_active(slug)), policy=GatewayPolicy(rate_limit_per_minute=per_minute)
            )
        except ValidationError as exc:
            raise CommandError(one_line(exc)) from None
        self.stdout.write(f"{workspace.slug}: {workspace.rate_limit_per_minute} requests per minute per client IP")
