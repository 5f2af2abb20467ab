"""Terminate a hosted instance (stopped, and removed from the workspace's gateway)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.hosting.models import Instance
from apps.hosting.services import instance_terminate
from apps.workspaces.management.cli import one_line, operator_access, workspace_active


class Command(BaseCommand):
    help = "Terminate a hosted instance: terminate SLUG INSTANCE_ID, or every running one: terminate SLUG --all"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="workspace slug")
        parser.add_argument("instance_id", type=int, nargs="?")
        parser.add_argument("--all", action="store_true", help="every pending, starting or running instance")

    def handle(self, *args, slug: str, instance_id: int | None, all: bool, **options):
        workspace = workspace_active(slug)
        if (instance_id is None) == (not all):
            raise CommandError("Name one INSTANCE_ID, or --all.")
        instances = Instance.objects.filter(workspace=workspace).select_related("image")
        chosen = list(instances.counting_against_plan() if all else instances.filter(pk=instance_id))
        if not chosen and not all:
            raise CommandError(f"{slug} has no instance {instance_id}.")
        for instance in chosen:
            try:
                instance = instance_terminate(access=operator_access(workspace), instance=instance)
            except RuleViolation as exc:
                raise CommandError(one_line(exc)) from None
            self.stdout.write(f"Instance {instance.pk}: {instance.status}.")
