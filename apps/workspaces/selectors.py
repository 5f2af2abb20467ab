"""Reads of workspaces, memberships and invitations, for the portal, the API and the services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import OuterRef, QuerySet, Subquery

from apps.core import secrets
from apps.workspaces.models import Invitation, Membership, Workspace

if TYPE_CHECKING:
    from apps.accounts.models import User


def workspaces_with_role(*, user: User) -> QuerySet[Workspace]:
    """The active workspaces ``user`` is a member of, by name, each annotated with ``user_role``."""
    role = Membership.objects.filter(workspace=OuterRef("pk"), user=user).values("role")[:1]
    return Workspace.objects.visible_to(user).annotate(user_role=Subquery(role)).order_by("name")


def memberships_by_email(*, workspace: Workspace) -> QuerySet[Membership]:
    return Membership.objects.filter(workspace=workspace).select_related("user").order_by("user__email")


def invitations_pending(*, workspace: Workspace) -> QuerySet[Invitation]:
    """Invitations that can still be accepted, newest first."""
    return Invitation.objects.pending().filter(workspace=workspace).select_related("invited_by").order_by("-created_at")


def invitation_pending_for(*, workspace: Workspace, email: str) -> Invitation | None:
    return Invitation.objects.pending().filter(workspace=workspace, email=email).first()


def invitation_lookup(raw: str) -> Invitation | None:
    """The invitation a link's secret belongs to, whatever its state; None for a wrong secret."""
    if not secrets.pattern(Invitation.SCHEME).match(raw or ""):
        return None
    invitation = Invitation.objects.select_related("workspace").filter(digest=secrets.digest(raw)).first()
    if invitation is None or not secrets.matches(raw, invitation.digest):
        return None
    return invitation
