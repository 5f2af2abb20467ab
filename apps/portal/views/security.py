"""The Security tab: its page, the enforcement policy, allowlists and tool pins."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from apps.audit.selectors import shadow_findings
from apps.core.http import client_ip
from apps.gateway import selectors
from apps.gateway import services as gateway_services
from apps.gateway.models import ToolPin
from apps.portal.forms import AllowlistForm, PolicyForm, ServerForm
from apps.portal.views.base import ACTION_METHODS, PAGE_METHODS, attempt, workspace_context, workspace_view
from apps.rbac.access import Access
from apps.rbac.roles import Capability
from apps.workspaces import services as workspace_services
from apps.workspaces.models import Membership
from apps.workspaces.selectors import memberships_by_email

SHADOW_FINDINGS = 20  # the newest would-be blocks shown on the Security tab


def security_page(
    request: HttpRequest,
    access: Access,
    *,
    server_form: ServerForm | None = None,
    policy_form: PolicyForm | None = None,
) -> HttpResponse:
    workspace = access.workspace
    context = workspace_context(access, server_form=server_form or ServerForm())
    servers = selectors.servers_in_order(workspace=workspace)
    if access.can(Capability.MANAGE_SERVERS):
        context["servers"] = list(servers.select_related("requested_by").prefetch_related("pins"))
        for server in context["servers"]:
            server.tool_rows = selectors.server_tools(server)
    else:
        # Members see only what they asked for, not the workspace's upstream URLs.
        context["my_requests"] = list(servers.filter(requested_by=access.user))
    if access.can(Capability.MANAGE_ALLOWLISTS):
        context["policy_form"] = policy_form or PolicyForm(
            initial={
                "enforcement": workspace.enforcement,
                "deny_by_default": workspace.deny_by_default,
                "rate_limit_per_minute": workspace.rate_limit_per_minute,
            }
        )
        rules = selectors.allowlists(workspace)
        memberships = memberships_by_email(workspace=workspace)
        context["allowlists"] = [(membership, rules.get(membership.user_id, [])) for membership in memberships]
        context["pending_pins"] = [(pin, selectors.pin_diff(pin)) for pin in selectors.pending_pins(workspace)]
    if access.can(Capability.VIEW_AUDIT):
        context["findings"] = shadow_findings(workspace=workspace, limit=SHADOW_FINDINGS)
    return render(request, "portal/security.html", context)


def back_to_security(access: Access, anchor: str = "") -> HttpResponse:
    return redirect(reverse("portal:security", args=[access.workspace.slug]) + (f"#{anchor}" if anchor else ""))


@workspace_view(Capability.REQUEST_SERVER, methods=("GET", "HEAD"))
def security(request: HttpRequest, access: Access) -> HttpResponse:
    return security_page(request, access)


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=ACTION_METHODS)
def security_policy(request: HttpRequest, access: Access) -> HttpResponse:
    form = PolicyForm(request.POST)
    if form.is_valid():
        policy = workspace_services.GatewayPolicy.pick(form.cleaned_data)
        ok, _ = attempt(
            request,
            lambda: workspace_services.workspace_set_policy(access=access, policy=policy, ip=client_ip(request)),
            form=form,
        )
        if ok:
            messages.success(request, "Enforcement settings saved.")
            return back_to_security(access, "enforcement")
    return security_page(request, access, policy_form=form)


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=PAGE_METHODS)
def allowlist_edit(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, workspace=access.workspace)
    if request.method == "POST":
        form = AllowlistForm(request.POST)
        if form.is_valid():
            ok, saved = attempt(
                request,
                lambda: gateway_services.allowlist_set(
                    access=access, member=membership.user, rules=form.chosen(), ip=client_ip(request)
                ),
                form=form,
            )
            if ok:
                messages.success(request, f"Allowlist of {membership.user.email} saved: {len(saved)} rules.")
                for warning in saved.warnings:
                    messages.warning(request, warning)
                return back_to_security(access, "allowlists")
        # Shown again with the errors: the picker needs the tool list after all.
        form.servers = selectors.live_tools(access.workspace)
    else:
        servers = selectors.live_tools(access.workspace)
        rules = selectors.allowlists(access.workspace).get(membership.user_id, [])
        form = AllowlistForm(initial=AllowlistForm.initial_for(rules, servers), servers=servers)
    context = workspace_context(access, membership=membership, form=form)
    return render(request, "portal/security_allowlist.html", context)


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=ACTION_METHODS)
def pin_approve(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    pin = get_object_or_404(ToolPin.objects.select_related("server"), pk=pk, server__workspace=access.workspace)
    ok, _ = attempt(request, lambda: gateway_services.pin_approve(access=access, pin=pin, ip=client_ip(request)))
    if ok:
        messages.success(request, f"New definition of {pin.server.slug}:{pin.tool_name} approved.")
    return back_to_security(access, "pins")


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=ACTION_METHODS)
def pin_reject(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    pin = get_object_or_404(ToolPin.objects.select_related("server"), pk=pk, server__workspace=access.workspace)
    ok, _ = attempt(request, lambda: gateway_services.pin_reject(access=access, pin=pin, ip=client_ip(request)))
    if ok:
        messages.success(
            request, f"New definition of {pin.server.slug}:{pin.tool_name} rejected; the tool stays withheld."
        )
    return back_to_security(access, "pins")
