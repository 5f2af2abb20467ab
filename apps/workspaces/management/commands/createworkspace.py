"""Create a workspace and its first Owner: ``manage.py createworkspace SLUG --owner EMAIL``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.workspaces.management.cli import NEW_ACCOUNT_NOTE, one_line, user_get_or_create
from apps.workspaces.models import Plan
from apps.workspaces.services import workspace_create


class Command(BaseCommand):
    help = "Create a workspace with EMAIL as its Owner (the account is created if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, metavar="EMAIL")
        parser.add_argument("--plan", choices=Plan.values, default=Plan.TEAM)
        parser.add_argument("--name", default="", help="display name (defaults to the slug)")

    def handle(self, *args, slug: str, owner: str, plan: str, name: str, **options) -> None:
        # One transaction: a refused slug must not leave a freshly created account behind.
        try:
            with transaction.atomic():
                user, created = user_get_or_create(owner)
                workspace = workspace_create(actor=user, slug=slug, name=name, plan=plan)
        except ValidationError as exc:
            raise CommandError(one_line(exc)) from None
        self.stdout.write(f"Created workspace {workspace.slug} ({workspace.get_plan_display()}) owned by {user.email}.")
        if created:
            self.stdout.write(NEW_ACCOUNT_NOTE.format(email=user.email))
