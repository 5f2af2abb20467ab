"""Members and invitations: the member list, inviting, roles, removal, and the invitee's side."""

from __future__ import annotations

import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.core.errors import RuleViolation
from apps.core.http import client_ip
from apps.portal.forms import InvitationForm, RoleForm, assignable_roles
from apps.portal.views.base import (
    ACTION_METHODS,
    Confirmation,
    ask,
    attempt,
    confirmed,
    refused_without,
    when,
    workspace_context,
    workspace_view,
)
from apps.portal.views.workspaces import ask_to_leave
from apps.rbac.access import Access, check_role_change
from apps.rbac.roles import Capability, Role
from apps.tokens.selectors import active_token_count
from apps.workspaces import selectors
from apps.workspaces import services as workspace_services
from apps.workspaces.models import Invitation, Membership

# --- Members and invitations --------------------------------------------------------


def _can_manage(access: Access, membership: Membership) -> bool:
    """Whether to offer role/remove controls on a row (the service decides for real)."""
    if membership.user_id == access.user.pk:
        return False
    try:
        check_role_change(actor_role=access.role, target_role=membership.role, new_role=None)
    except RuleViolation:
        return False
    return True


def _members_page(
    request: HttpRequest,
    access: Access,
    *,
    invite_form: InvitationForm | None = None,
    pending: Invitation | None = None,
) -> HttpResponse:
    workspace = access.workspace
    memberships = selectors.memberships_by_email(workspace=workspace)
    rows = [(membership, _can_manage(access, membership)) for membership in memberships]
    can_invite = access.can(Capability.MANAGE_MEMBERS)
    invitations = list(selectors.invitations_pending(workspace=workspace)) if can_invite else []
    if can_invite and invite_form is None:
        invite_form = InvitationForm(actor_role=access.role)
    context = workspace_context(
        access,
        rows=rows,
        invitations=invitations,
        invite_form=invite_form,
        role_choices=assignable_roles(access.role),
        # The pending invitation an invite was refused for: offer to replace it (as the refused
        # invite's role) or to revoke it.
        pending=pending,
        replacement_role=Role(invite_form.cleaned_data["role"]) if pending else None,
    )
    return render(request, "portal/members.html", context)


@workspace_view(Capability.VIEW_MEMBERS, methods=("GET", "HEAD"))
def members(request: HttpRequest, access: Access) -> HttpResponse:
    return _members_page(request, access)


@workspace_view(Capability.VIEW_MEMBERS, methods=ACTION_METHODS)
def member_invite(request: HttpRequest, access: Access) -> HttpResponse:
    if refused_without(request, access, Capability.MANAGE_MEMBERS):
        return redirect("portal:members", slug=access.workspace.slug)
    form = InvitationForm(request.POST, actor_role=access.role)
    # Set only by the "Replace it" button offered after a refusal: a second, explicit decision.
    replace = confirmed(request)
    pending = None
    if form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        ok, _ = attempt(
            request,
            lambda: workspace_services.invitation_create(
                access=access,
                email=email,
                role=form.cleaned_data["role"],
                base_url=request.build_absolute_uri("/"),
                ip=client_ip(request),
                replace=replace,
            ),
            form=form,
        )
        if ok:
            if replace:
                messages.success(request, f"Invitation sent to {email}; the earlier invitation's link no longer works.")
            else:
                messages.success(request, f"Invitation sent to {email}.")
            return redirect("portal:members", slug=access.workspace.slug)
        if not replace:
            pending = selectors.invitation_pending_for(workspace=access.workspace, email=email)
    return _members_page(request, access, invite_form=form, pending=pending)


@workspace_view(Capability.VIEW_MEMBERS, methods=ACTION_METHODS)
def invitation_revoke(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=pk, workspace=access.workspace)
    ok, _ = attempt(
        request,
        lambda: workspace_services.invitation_revoke(access=access, invitation=invitation, ip=client_ip(request)),
    )
    if ok:
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("portal:members", slug=access.workspace.slug)


@workspace_view(Capability.VIEW_MEMBERS, methods=ACTION_METHODS)
def member_role(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, workspace=access.workspace)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed roles.")
    else:
        role = form.cleaned_data["role"]
        ok, _ = attempt(
            request,
            lambda: workspace_services.member_change_role(
                access=access, membership=membership, role=role, ip=client_ip(request)
            ),
        )
        if ok:
            messages.success(request, f"{membership.user.email} is now {Role(role).label}.")
    return redirect("portal:members", slug=access.workspace.slug)


@workspace_view(Capability.VIEW_MEMBERS)
def member_remove(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST removes."""
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, workspace=access.workspace)
    members_url = reverse("portal:members", args=[access.workspace.slug])
    if not confirmed(request):
        if membership.user_id == request.user.pk:
            return ask_to_leave(request, access)
        # No point confirming what the service will refuse: say why now.
        check = functools.partial(check_role_change, actor_role=access.role, target_role=membership.role, new_role=None)
        if not attempt(request, check)[0]:
            return redirect(members_url)
        email = membership.user.email
        active = active_token_count(workspace=access.workspace, user=membership.user)
        confirmation = Confirmation(
            question=f"Remove {email} from “{access.workspace.name}”?",
            facts=(
                ("Role", membership.get_role_display()),
                ("Member since", when(membership.created_at, "%Y-%m-%d")),
                ("Active tokens", str(active)),
            ),
            consequence=(
                "They lose access at once and their gateway tokens in this workspace are revoked. "
                "To come back, they need a new invitation."
            ),
            button=f"Remove {email}",
            cancel=f"{members_url}#member-{membership.pk}",
        )
        return ask(request, workspace_context(access), confirmation)
    ok, _ = attempt(
        request,
        lambda: workspace_services.member_remove(access=access, membership=membership, ip=client_ip(request)),
    )
    if ok:
        if membership.user_id == request.user.pk:
            messages.success(request, f"You left “{access.workspace.name}”.")
            return redirect("portal:home")
        messages.success(request, f"{membership.user.email} removed; their tokens are revoked.")
    return redirect("portal:members", slug=access.workspace.slug)


# --- Invitations (the invitee's side) ---------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def invitation(request: HttpRequest, secret: str) -> HttpResponse:
    if request.method == "POST":
        ok, membership = attempt(
            request,
            lambda: workspace_services.invitation_accept(user=request.user, raw=secret, ip=client_ip(request)),
        )
        if ok:
            messages.success(
                request, f"Welcome to “{membership.workspace.name}”. You joined as {membership.get_role_display()}."
            )
            return redirect("portal:workspace", slug=membership.workspace.slug)
    found = selectors.invitation_lookup(secret)
    context = {
        "invitation": found,
        "email_matches": found is not None and found.email.lower() == request.user.email.lower(),
    }
    return render(request, "portal/invitation.html", context, status=404 if found is None else 200)
