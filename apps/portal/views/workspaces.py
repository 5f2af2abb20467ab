"""Workspaces: the list, creating one, its overview, settings, deletion and leaving."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from apps.core.http import client_ip
from apps.portal.forms import WorkspaceCreateForm, WorkspaceDeleteForm, WorkspaceSettingsForm
from apps.portal.views.base import (
    ACTION_METHODS,
    Confirmation,
    ask,
    attempt,
    confirmed,
    gateway_url,
    refused_without,
    role_label,
    workspace_context,
    workspace_view,
)
from apps.rbac.access import Access
from apps.rbac.roles import Capability
from apps.tokens.selectors import active_token_count, tokens_visible_to
from apps.workspaces import selectors
from apps.workspaces import services as workspace_services


@login_required
@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    workspaces = selectors.workspaces_with_role(user=request.user)
    rows = [(workspace, role_label(workspace.user_role)) for workspace in workspaces]
    return render(request, "portal/home.html", {"rows": rows})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def workspace_new(request: HttpRequest) -> HttpResponse:
    form = WorkspaceCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        ok, workspace = attempt(
            request,
            lambda: workspace_services.workspace_create(actor=request.user, **form.cleaned_data, ip=client_ip(request)),
            form=form,
        )
        if ok:
            messages.success(request, f"Workspace “{workspace.name}” created. You are its Owner.")
            return redirect("portal:workspace", slug=workspace.slug)
    return render(request, "portal/workspace_new.html", {"form": form})


def _overview(
    request: HttpRequest,
    access: Access,
    *,
    settings_form: WorkspaceSettingsForm | None = None,
    delete_form: WorkspaceDeleteForm | None = None,
) -> HttpResponse:
    workspace = access.workspace
    counts = {
        "members": workspace.memberships.count(),
        "active_tokens": tokens_visible_to(access=access).active().count(),
    }
    if access.can(Capability.VIEW_MEMBERS):
        counts["pending_invitations"] = selectors.invitations_pending(workspace=workspace).count()
    if access.can(Capability.UPDATE_WORKSPACE):
        settings_form = settings_form or WorkspaceSettingsForm(initial={"name": workspace.name, "plan": workspace.plan})
    if access.can(Capability.DELETE_WORKSPACE):
        delete_form = delete_form or WorkspaceDeleteForm(slug=workspace.slug)
    context = workspace_context(
        access,
        gateway_url=gateway_url(request, workspace),
        counts=counts,
        settings_form=settings_form,
        delete_form=delete_form,
    )
    return render(request, "portal/workspace_overview.html", context)


@workspace_view(methods=("GET", "HEAD"))
def workspace_overview(request: HttpRequest, access: Access) -> HttpResponse:
    return _overview(request, access)


@workspace_view(methods=ACTION_METHODS)
def workspace_settings(request: HttpRequest, access: Access) -> HttpResponse:
    if refused_without(request, access, Capability.UPDATE_WORKSPACE):
        return redirect("portal:workspace", slug=access.workspace.slug)
    form = WorkspaceSettingsForm(request.POST)
    if form.is_valid():
        ok, _ = attempt(
            request,
            lambda: workspace_services.workspace_update(access=access, **form.cleaned_data, ip=client_ip(request)),
            form=form,
        )
        if ok:
            messages.success(request, "Workspace settings saved.")
            return redirect("portal:workspace", slug=access.workspace.slug)
    return _overview(request, access, settings_form=form)


@workspace_view(methods=ACTION_METHODS)
def workspace_delete(request: HttpRequest, access: Access) -> HttpResponse:
    if refused_without(request, access, Capability.DELETE_WORKSPACE):
        return redirect("portal:workspace", slug=access.workspace.slug)
    form = WorkspaceDeleteForm(request.POST, slug=access.workspace.slug)
    if form.is_valid():
        ok, _ = attempt(
            request, lambda: workspace_services.workspace_delete(access=access, ip=client_ip(request)), form=form
        )
        if ok:
            messages.success(request, f"Workspace “{access.workspace.name}” deleted; its tokens are revoked.")
            return redirect("portal:home")
    return _overview(request, access, delete_form=form)


def ask_to_leave(request: HttpRequest, access: Access) -> HttpResponse:
    workspace = access.workspace
    active = active_token_count(workspace=workspace, user=access.user)
    confirmation = Confirmation(
        question=f"Leave “{workspace.name}”?",
        facts=(("Your role", role_label(access.role)), ("Your active tokens", str(active))),
        consequence=(
            "Your gateway tokens in this workspace are revoked at once. To come back, you need a new invitation."
        ),
        button=f"Leave {workspace.name}",
        cancel=reverse("portal:workspace", args=[workspace.slug]),
    )
    return ask(request, workspace_context(access), confirmation)


@workspace_view()
def workspace_leave(request: HttpRequest, access: Access) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST leaves."""
    if access.membership is None:
        messages.error(request, "You are not a member of this workspace.")
        return redirect("portal:workspace", slug=access.workspace.slug)
    if not confirmed(request):
        return ask_to_leave(request, access)
    ok, _ = attempt(
        request,
        lambda: workspace_services.member_remove(access=access, membership=access.membership, ip=client_ip(request)),
    )
    if not ok:
        return redirect("portal:workspace", slug=access.workspace.slug)
    messages.success(request, f"You left “{access.workspace.name}”; your tokens there are revoked.")
    return redirect("portal:home")
