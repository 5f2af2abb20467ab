"""Helpers shared by the operator commands (createworkspace, addmember, issuetoken, …).

Commands stay thin: they resolve arguments to objects here, call the services, and turn
a refusal into a one-line ``CommandError``.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email

from apps.accounts.models import User
from apps.core.errors import RuleViolation
from apps.rbac.access import Access
from apps.rbac.roles import Role
from apps.workspaces.models import Workspace


def one_line(exc: ValidationError | RuleViolation) -> str:
    """A refusal as one line: ``field: message`` pairs for validation errors."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
        return " ".join(exc.messages)
    return str(exc)


def clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise CommandError(f"{email!r} is not a valid email address.") from None
    return email


def user_get_or_create(email: str) -> tuple[User, bool]:
    """The account for ``email``; a new one has no usable password (they use password reset)."""
    email = clean_email(email)
    user = User.objects.filter(email=email).first()
    if user is not None:
        return user, False
    return User.objects.create_user(email=email, password=None), True


def user_existing(email: str) -> User:
    email = clean_email(email)
    user = User.objects.filter(email=email).first()
    if user is None:
        raise CommandError(f"No account with email {email}.")
    return user


def workspace_active(slug: str) -> Workspace:
    workspace = Workspace.objects.active().filter(slug=slug).first()
    if workspace is None:
        raise CommandError(f"No workspace with slug {slug!r}.")
    return workspace


def operator_access(workspace: Workspace) -> Access:
    """Operators at the shell act with Owner rights; audit rows show no actor (the system)."""
    return Access(workspace=workspace, user=AnonymousUser(), role=Role.OWNER, membership=None)


NEW_ACCOUNT_NOTE = "{email} has no password yet; they set one with “Forgot password?” on the sign-in page."
