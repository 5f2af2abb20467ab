"""Terminate a hosted instance (stopped, and removed from the workspace's gateway)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.hosting.models import Instance
from apps.hosting.services import instance_terminate
from apps.workspaces.management.cli import one_line, operator_access, workspace_active


class Command(BaseCommand):
    help = "Terminate a hosted instance: terminate SLUG INSTANCE_ID"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="workspace slug")
        parser.add_argument("instance_id", type=int)

    def handle(self, *args, slug: str, instance_id: int, **options):
        workspace = workspace_active(slug)
        instance = Instance.objects.filter(workspace=workspace, pk=instance_id).select_related("image").first()
        if instance is None:
            raise CommandError(f"{slug} has no instance {instance_id}.")
        try:
            instance = instance_terminate(access=operator_access(workspace), instance=instance)
        except RuleViolation as exc:
            raise CommandError(one_line(exc)) from None
        self.stdout.write(f"Instance {instance.pk}: {instance.status}.")
