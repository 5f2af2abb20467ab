"""Add someone to a workspace: ``manage.py addmember SLUG EMAIL --role owner|admin|member``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.core.errors import RuleViolation
from apps.rbac.roles import Role
from apps.workspaces.management.cli import NEW_ACCOUNT_NOTE, one_line, user_get_or_create, workspace_active
from apps.workspaces.services import member_add_by_operator


class Command(BaseCommand):
    help = "Add EMAIL to a workspace with a role (the account is created if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("email")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args, slug: str, email: str, role: str, **options) -> None:
        workspace = workspace_active(slug)
        try:
            with transaction.atomic():
                user, created = user_get_or_create(email)
                member_add_by_operator(workspace=workspace, user=user, role=role)
        except (ValidationError, RuleViolation) as exc:
            raise CommandError(one_line(exc)) from None
        self.stdout.write(f"Added {user.email} to {workspace.slug} as {Role(role).label}.")
        if created:
            self.stdout.write(NEW_ACCOUNT_NOTE.format(email=user.email))
