"""List a workspace's hosted instances."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from apps.hosting.selectors import instances_for
from apps.workspaces.management.cli import operator_access, workspace_active


class Command(BaseCommand):
    help = "List a workspace's hosted MCP server instances: instances SLUG"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="workspace slug")

    def handle(self, *args, slug: str, **options):
        instances = list(instances_for(access=operator_access(workspace_active(slug))))
        if not instances:
            self.stdout.write(f"{slug} has no hosted instances.")
        for instance in instances:
            health = "healthy" if instance.healthy else "-"
            port = instance.host_port or "-"
            self.stdout.write(
                f"{instance.pk}\t{instance.image.slug}\t{instance.profile}\t{instance.status}\t{health}\t"
                f"{port}\t{instance.server_slug}"
            )
