"""The server-rendered portal. Views are thin: resolve access, call a service, render.

Every workspace view gets its ``Access`` from ``apps.rbac.access.workspace_for`` (through
``workspace_view``), so a non-member sees 404 for every page and action, GET or POST, and a
member whose role does not reach a page sees 403 with the role it needs.
Services enforce the finer rules; their refusals are shown to the user, never swallowed.

Destructive actions (removing a member or a server, revoking a token or an API key, leaving)
ask first, one way for all: their URL answers GET with a confirmation page, and a POST
changes something only when it carries ``confirm=yes`` (``Confirmation``, ``confirmed``).
A new raw secret (gateway token, API key) is shown on the page after the redirect, once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.accounts import services as account_services
from apps.accounts.models import ApiKey
from apps.audit import export
from apps.audit.events import Action
from apps.audit.models import AuditChain, AuditEvent, ChainedRecord, ToolCall
from apps.audit.services import audit_event_record
from apps.core import crypto
from apps.core.errors import RuleViolation
from apps.core.http import client_ip
from apps.gateway import client_configs, selectors
from apps.gateway import services as gateway_services
from apps.gateway.models import ToolPin, UpstreamServer
from apps.portal.forms import (
    WORKSPACE_HOLDER,
    AllowlistForm,
    ApiKeyForm,
    AuditFilterForm,
    DateRangeForm,
    InvitationForm,
    PolicyForm,
    RoleForm,
    ServerForm,
    TokenCreateForm,
    ToolCallFilterForm,
    WorkspaceCreateForm,
    WorkspaceDeleteForm,
    WorkspaceSettingsForm,
    assignable_roles,
)
from apps.rbac.access import Access, RoleRequired, check_role_change, workspace_for
from apps.rbac.roles import Capability, Role
from apps.tokens import services as token_services
from apps.tokens.models import GatewayToken
from apps.workspaces import services as workspace_services
from apps.workspaces.models import Invitation, Membership, Workspace

T = TypeVar("T")
PAGE_SIZE = 50
SHADOW_FINDINGS = 20  # the newest would-be blocks shown on the Security tab
PAGE_METHODS = ("GET", "HEAD", "POST")
ACTION_METHODS = ("POST",)


# --- Shared helpers -----------------------------------------------------------------


def workspace_view(capability: Capability = Capability.VIEW_WORKSPACE, *, methods: Sequence[str] = PAGE_METHODS):
    """Sign-in required; the workspace comes from the access gate; then the method is checked.

    The gate runs before the method check so that outsiders get the same 404 for every
    URL of a workspace, whatever the method.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
            try:
                access = workspace_for(user=request.user, slug=slug, capability=capability)
            except RoleRequired as refused:
                context = _workspace_context(refused.access, message=refused.message)
                return render(request, "portal/forbidden.html", context, status=403)
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            return view(request, access, **kwargs)

        return wrapper

    return decorate


def attempt(request: HttpRequest, call: Callable[[], T], *, form: forms.Form | None = None) -> tuple[bool, T | None]:
    """Run a service call; a refusal becomes form errors (or messages) instead of a 500.

    Returns (True, result) on success and (False, None) when the service said no.
    """
    try:
        return True, call()
    except RuleViolation as exc:
        _report(request, form, None, [str(exc)])
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                _report(request, form, field, errors)
        else:
            _report(request, form, None, exc.messages)
    return False, None


def _report(request: HttpRequest, form: forms.Form | None, field: str | None, errors: list[str]) -> None:
    if field == NON_FIELD_ERRORS:
        field = None
    elif field is not None and (form is None or field not in form.fields):
        # A field the page has no input for: name it so the message still makes sense.
        errors = [f"{field.replace('_', ' ').capitalize()}: {error}" for error in errors]
        field = None
    if form is not None:
        form.add_error(field, errors)
        return
    for error in errors:
        messages.error(request, error)


@dataclass(frozen=True)
class Page:
    rows: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_of(queryset: QuerySet, request: HttpRequest, size: int = PAGE_SIZE) -> Page:
    """One page of an ordered queryset without a COUNT: fetch size + 1 rows to see if more follow."""
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    offset = (number - 1) * size
    rows = list(queryset[offset : offset + size + 1])
    return Page(rows=rows[:size], number=number, has_next=len(rows) > size)


def _ip(request: HttpRequest) -> str | None:
    return client_ip(request)


def _workspace_context(access: Access, **extra: Any) -> dict[str, Any]:
    return {"access": access, "workspace": access.workspace, "role_label": _role_label(access.role), **extra}


def _role_label(role: str | None) -> str:
    return Role(role).label if role in Role.values else "Operator"


def _gateway_url(request: HttpRequest, workspace: Workspace) -> str:
    return request.build_absolute_uri(reverse("gateway", kwargs={"slug": workspace.slug}))


def _hold_secret(request: HttpRequest, key: str, raw: str) -> None:
    """Keep a new raw secret for the page the POST redirects to (Post/Redirect/Get).

    Encrypted, because the session is a database row; ``_take_secret`` removes it.
    """
    request.session[key] = crypto.encrypt(raw)


def _take_secret(request: HttpRequest, key: str) -> str | None:
    """The secret held for this page, once: it leaves the session as it is shown."""
    if request.method != "GET":  # a HEAD would use it up without showing it
        return None
    sealed = request.session.pop(key, None)
    if sealed is None:
        return None
    try:
        return crypto.decrypt(sealed)
    except crypto.DecryptionError:  # the encryption keys rotated in between: nothing to show
        return None


# --- Confirmations ----------------------------------------------------------------

CONFIRM_FIELD, CONFIRM_VALUE = "confirm", "yes"


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation page (portal/confirm.html) asks before a destructive POST."""

    question: str
    button: str  # the confirming button's label, e.g. "Remove carol@example.com"
    cancel: str  # where Cancel leads
    consequence: str = ""
    facts: tuple[tuple[str, str], ...] = ()


def _when(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return timezone.localtime(moment).strftime(fmt) if moment else "never"


def confirmed(request: HttpRequest) -> bool:
    """Whether this is the POST of a confirmation page; anything else must change nothing."""
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == CONFIRM_VALUE


def _ask(
    request: HttpRequest,
    context: dict[str, Any],
    confirmation: Confirmation,
    *,
    template: str = "portal/confirm.html",
) -> HttpResponse:
    """The confirmation page; after a POST that did not confirm, it also says so."""
    if request.method == "POST":
        messages.error(
            request, f"Nothing was changed: this needs confirming. Press “{confirmation.button}” below, or Cancel."
        )
    return render(request, template, {**context, "confirm": confirmation})


# --- Workspaces -------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    # The filter in visible_to() joins memberships on this user, so my_role is the user's own role.
    workspaces = Workspace.objects.visible_to(request.user).annotate(my_role=F("memberships__role")).order_by("name")
    rows = [(workspace, _role_label(workspace.my_role)) for workspace in workspaces]
    return render(request, "portal/home.html", {"rows": rows})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def workspace_new(request: HttpRequest) -> HttpResponse:
    form = WorkspaceCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        ok, workspace = attempt(
            request,
            lambda: workspace_services.workspace_create(actor=request.user, **form.cleaned_data, ip=_ip(request)),
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
        "active_tokens": _visible_tokens(access).active().count(),
    }
    if access.can(Capability.VIEW_MEMBERS):
        counts["pending_invitations"] = workspace.invitations.pending().count()
    if access.can(Capability.UPDATE_WORKSPACE):
        settings_form = settings_form or WorkspaceSettingsForm(initial={"name": workspace.name, "plan": workspace.plan})
    if access.can(Capability.DELETE_WORKSPACE):
        delete_form = delete_form or WorkspaceDeleteForm(slug=workspace.slug)
    context = _workspace_context(
        access,
        gateway_url=_gateway_url(request, workspace),
        counts=counts,
        settings_form=settings_form,
        delete_form=delete_form,
    )
    return render(request, "portal/workspace_overview.html", context)


@workspace_view(methods=("GET", "HEAD"))
def workspace_overview(request: HttpRequest, access: Access) -> HttpResponse:
    return _overview(request, access)


def _refused(request: HttpRequest, access: Access, capability: Capability) -> bool:
    """True (with the reason as a message) when the actor's role lacks ``capability``."""
    ok, _ = attempt(request, lambda: access.require(capability))
    return not ok


@workspace_view(methods=ACTION_METHODS)
def workspace_settings(request: HttpRequest, access: Access) -> HttpResponse:
    if _refused(request, access, Capability.UPDATE_WORKSPACE):
        return redirect("portal:workspace", slug=access.workspace.slug)
    form = WorkspaceSettingsForm(request.POST)
    if form.is_valid():
        ok, _ = attempt(
            request,
            lambda: workspace_services.workspace_update(access=access, **form.cleaned_data, ip=_ip(request)),
            form=form,
        )
        if ok:
            messages.success(request, "Workspace settings saved.")
            return redirect("portal:workspace", slug=access.workspace.slug)
    return _overview(request, access, settings_form=form)


@workspace_view(methods=ACTION_METHODS)
def workspace_delete(request: HttpRequest, access: Access) -> HttpResponse:
    if _refused(request, access, Capability.DELETE_WORKSPACE):
        return redirect("portal:workspace", slug=access.workspace.slug)
    form = WorkspaceDeleteForm(request.POST, slug=access.workspace.slug)
    if form.is_valid():
        ok, _ = attempt(request, lambda: workspace_services.workspace_delete(access=access, ip=_ip(request)), form=form)
        if ok:
            messages.success(request, f"Workspace “{access.workspace.name}” deleted; its tokens are revoked.")
            return redirect("portal:home")
    return _overview(request, access, delete_form=form)


def _ask_to_leave(request: HttpRequest, access: Access) -> HttpResponse:
    workspace = access.workspace
    active = GatewayToken.objects.filter(workspace=workspace, user=access.user).active().count()
    confirmation = Confirmation(
        question=f"Leave “{workspace.name}”?",
        facts=(("Your role", _role_label(access.role)), ("Your active tokens", str(active))),
        consequence=(
            "Your gateway tokens in this workspace are revoked at once. To come back, you need a new invitation."
        ),
        button=f"Leave {workspace.name}",
        cancel=reverse("portal:workspace", args=[workspace.slug]),
    )
    return _ask(request, _workspace_context(access), confirmation)


@workspace_view()
def workspace_leave(request: HttpRequest, access: Access) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST leaves."""
    if access.membership is None:
        messages.error(request, "You are not a member of this workspace.")
        return redirect("portal:workspace", slug=access.workspace.slug)
    if not confirmed(request):
        return _ask_to_leave(request, access)
    ok, _ = attempt(
        request,
        lambda: workspace_services.member_remove(access=access, membership=access.membership, ip=_ip(request)),
    )
    if not ok:
        return redirect("portal:workspace", slug=access.workspace.slug)
    messages.success(request, f"You left “{access.workspace.name}”; your tokens there are revoked.")
    return redirect("portal:home")


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
    memberships = workspace.memberships.select_related("user").order_by("user__email")
    rows = [(membership, _can_manage(access, membership)) for membership in memberships]
    can_invite = access.can(Capability.MANAGE_MEMBERS)
    invitations = (
        list(workspace.invitations.pending().select_related("invited_by").order_by("-created_at")) if can_invite else []
    )
    if can_invite and invite_form is None:
        invite_form = InvitationForm(actor_role=access.role)
    context = _workspace_context(
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
    if _refused(request, access, Capability.MANAGE_MEMBERS):
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
                ip=_ip(request),
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
            pending = access.workspace.invitations.pending().filter(email=email).first()
    return _members_page(request, access, invite_form=form, pending=pending)


@workspace_view(Capability.VIEW_MEMBERS, methods=ACTION_METHODS)
def invitation_revoke(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=pk, workspace=access.workspace)
    ok, _ = attempt(
        request,
        lambda: workspace_services.invitation_revoke(access=access, invitation=invitation, ip=_ip(request)),
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
                access=access, membership=membership, role=role, ip=_ip(request)
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
            return _ask_to_leave(request, access)
        # No point confirming what the service will refuse: say why now.
        check = functools.partial(check_role_change, actor_role=access.role, target_role=membership.role, new_role=None)
        if not attempt(request, check)[0]:
            return redirect(members_url)
        email = membership.user.email
        active = GatewayToken.objects.filter(workspace=access.workspace, user=membership.user).active().count()
        confirmation = Confirmation(
            question=f"Remove {email} from “{access.workspace.name}”?",
            facts=(
                ("Role", membership.get_role_display()),
                ("Member since", _when(membership.created_at, "%Y-%m-%d")),
                ("Active tokens", str(active)),
            ),
            consequence=(
                "They lose access at once and their gateway tokens in this workspace are revoked. "
                "To come back, they need a new invitation."
            ),
            button=f"Remove {email}",
            cancel=f"{members_url}#member-{membership.pk}",
        )
        return _ask(request, _workspace_context(access), confirmation)
    ok, _ = attempt(
        request,
        lambda: workspace_services.member_remove(access=access, membership=membership, ip=_ip(request)),
    )
    if ok:
        if membership.user_id == request.user.pk:
            messages.success(request, f"You left “{access.workspace.name}”.")
            return redirect("portal:home")
        messages.success(request, f"{membership.user.email} removed; their tokens are revoked.")
    return redirect("portal:members", slug=access.workspace.slug)


# --- Gateway tokens ---------------------------------------------------------------


def _visible_tokens(access: Access) -> QuerySet[GatewayToken]:
    """All of the workspace's tokens for token managers; otherwise only one's own."""
    tokens = GatewayToken.objects.filter(workspace=access.workspace)
    if not access.can(Capability.MANAGE_TOKENS):
        tokens = tokens.filter(kind=GatewayToken.Kind.MEMBER, user=access.user)
    return tokens


def _new_token_key(access: Access) -> str:
    return f"portal:new-token:{access.workspace.pk}"


@never_cache  # the page after creating one carries the raw token: no cache may keep it
@workspace_view(Capability.MANAGE_OWN_TOKENS)
def tokens(request: HttpRequest, access: Access) -> HttpResponse:
    """The list and the create form. A created token's raw value shows on the next GET only."""
    memberships = (
        list(access.workspace.memberships.select_related("user").order_by("user__email"))
        if access.can(Capability.MANAGE_TOKENS)
        else None
    )
    form = TokenCreateForm(
        request.POST if request.method == "POST" else None, memberships=memberships, actor_id=request.user.pk
    )
    if request.method == "POST" and form.is_valid():
        holder = form.cleaned_data.get("holder") or str(request.user.pk)
        kind, member = GatewayToken.Kind.MEMBER, request.user
        if holder == WORKSPACE_HOLDER:
            kind, member = GatewayToken.Kind.WORKSPACE, None
        elif memberships is not None:
            member = next(m.user for m in memberships if str(m.user_id) == holder)
        ok, issued = attempt(
            request,
            lambda: token_services.token_create(
                access=access,
                member=member,
                name=form.cleaned_data["name"],
                expires_days=form.cleaned_data["expires_days"],
                kind=kind,
                ip=_ip(request),
            ),
            form=form,
        )
        if ok:
            # Redirect, so that reloading the page shows it rather than creating another.
            _hold_secret(request, _new_token_key(access), issued.raw)
            return redirect("portal:tokens", slug=access.workspace.slug)
    page = page_of(_visible_tokens(access).select_related("user", "created_by").order_by("-created_at", "-id"), request)
    context = _workspace_context(access, form=form, issued=_take_secret(request, _new_token_key(access)), page=page)
    return render(request, "portal/tokens.html", context)


@workspace_view(Capability.MANAGE_OWN_TOKENS)
def token_revoke(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST revokes."""
    # Looked up among the tokens the actor can see, so others' token ids don't even resolve.
    token = get_object_or_404(_visible_tokens(access).select_related("user", "workspace"), pk=pk)
    if token.revoked_at is not None:
        messages.info(request, f"Token {token.prefix}… was already revoked.")
        return redirect("portal:tokens", slug=access.workspace.slug)
    if not confirmed(request):
        holder = "the workspace (workspace token)" if token.kind == GatewayToken.Kind.WORKSPACE else token.user.email
        confirmation = Confirmation(
            question=f"Revoke the token {token.prefix}…?",
            facts=(
                ("Name", token.name or "—"),
                ("For", holder),
                ("Created", _when(token.created_at)),
                ("Last used", _when(token.last_used_at)),
            ),
            consequence=(
                "Every client using it is refused from now on. This cannot be undone: to reconnect, create a new token."
            ),
            button=f"Revoke {token.prefix}…",
            cancel=reverse("portal:tokens", args=[access.workspace.slug]),
        )
        return _ask(request, _workspace_context(access), confirmation)
    ok, revoked = attempt(request, lambda: token_services.token_revoke(access=access, token=token, ip=_ip(request)))
    if ok:
        if revoked:
            messages.success(request, f"Token {token.prefix}… revoked.")
        else:
            messages.info(request, f"Token {token.prefix}… was already revoked.")
    return redirect("portal:tokens", slug=access.workspace.slug)


# --- Audit trail --------------------------------------------------------------------


@workspace_view(Capability.VIEW_AUDIT, methods=("GET", "HEAD"))
def audit(request: HttpRequest, access: Access) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    events = AuditEvent.objects.none()
    if form.is_valid():
        events = AuditEvent.objects.filter(workspace=access.workspace, **form.filters()).order_by("-created_at", "-id")
    context = _workspace_context(access, form=form, page=page_of(events, request), formats=export.FORMATS)
    return render(request, "portal/audit.html", context)


@workspace_view(Capability.VIEW_AUDIT, methods=("GET",))
def audit_export(request: HttpRequest, access: Access) -> HttpResponse:
    return _export(request, access, model=AuditEvent, form=AuditFilterForm(request.GET), back="portal:audit")


EXPORT_KINDS: dict[type[ChainedRecord], str] = {AuditEvent: "events", ToolCall: "tool-calls"}


def _export(
    request: HttpRequest, access: Access, *, model: type[ChainedRecord], form: DateRangeForm, back: str
) -> HttpResponse:
    """Stream the workspace's ``model`` rows matching ``form`` as a download; the export is audited."""
    workspace = access.workspace
    fmt = request.GET.get("format", "")
    if fmt not in export.FORMATS or not form.is_valid():
        messages.error(request, f"Choose valid filters and one of: {', '.join(export.FORMATS)}.")
        return redirect(back, slug=workspace.slug)
    used = {name: str(value) for name, value in form.cleaned_data.items() if value}
    # A consistent snapshot that an auditor can re-verify, however long the download takes:
    # the rows up to the chain's head as it is now (so an events export stops before itself).
    head = AuditChain.objects.filter(workspace=workspace, stream=model.STREAM).values_list("last_seq", flat=True)
    last_seq = head.first() or 0
    audit_event_record(
        workspace=workspace,
        actor=request.user,
        action=Action.AUDIT_EXPORTED,
        target_type="workspace",
        target_id=workspace.pk,
        target_repr=workspace.slug,
        metadata={"format": fmt, "kind": EXPORT_KINDS[model], "filters": used},
        ip=_ip(request),
    )
    # In chain order, so consecutive rows link up for offline verification.
    rows = model.objects.filter(workspace=workspace, seq__lte=last_seq, **form.filters()).order_by("seq")
    return export.ExportResponse(rows, fmt, label=workspace.slug)


# --- Tool calls ---------------------------------------------------------------------


@workspace_view(Capability.VIEW_AUDIT, methods=("GET", "HEAD"))
def tool_calls(request: HttpRequest, access: Access) -> HttpResponse:
    form = ToolCallFilterForm(request.GET)
    calls = ToolCall.objects.none()
    if form.is_valid():
        calls = ToolCall.objects.filter(workspace=access.workspace, **form.filters()).order_by("-created_at", "-id")
    context = _workspace_context(access, form=form, page=page_of(calls, request), formats=export.FORMATS)
    return render(request, "portal/tool_calls.html", context)


@workspace_view(Capability.VIEW_AUDIT, methods=("GET",))
def tool_calls_export(request: HttpRequest, access: Access) -> HttpResponse:
    return _export(request, access, model=ToolCall, form=ToolCallFilterForm(request.GET), back="portal:calls")


# --- Connecting clients ---------------------------------------------------------------


@workspace_view(Capability.USE_GATEWAY, methods=("GET", "HEAD"))
def connect(request: HttpRequest, access: Access) -> HttpResponse:
    url = _gateway_url(request, access.workspace)
    configs = client_configs.all_configs(access.workspace.slug, url)
    context = _workspace_context(access, gateway_url=url, configs=configs, placeholder=client_configs.TOKEN_PLACEHOLDER)
    return render(request, "portal/connect.html", context)


# --- Security: upstream servers, enforcement, allowlists, tool pins -----------------


def _security_page(
    request: HttpRequest,
    access: Access,
    *,
    server_form: ServerForm | None = None,
    policy_form: PolicyForm | None = None,
) -> HttpResponse:
    workspace = access.workspace
    context = _workspace_context(access, server_form=server_form or ServerForm())
    servers = UpstreamServer.objects.filter(workspace=workspace).order_by("position", "slug")
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
        memberships = workspace.memberships.select_related("user").order_by("user__email")
        context["allowlists"] = [(membership, rules.get(membership.user_id, [])) for membership in memberships]
        context["pending_pins"] = [(pin, selectors.pin_diff(pin)) for pin in selectors.pending_pins(workspace)]
    if access.can(Capability.VIEW_AUDIT):
        context["findings"] = list(
            ToolCall.objects.filter(workspace=workspace, shadow_blocked=True).order_by("-created_at", "-id")[
                :SHADOW_FINDINGS
            ]
        )
    return render(request, "portal/security.html", context)


def _back_to_security(access: Access, anchor: str = "") -> HttpResponse:
    return redirect(reverse("portal:security", args=[access.workspace.slug]) + (f"#{anchor}" if anchor else ""))


def _server(access: Access, pk: int) -> UpstreamServer:
    return get_object_or_404(UpstreamServer.objects.select_related("workspace"), pk=pk, workspace=access.workspace)


@workspace_view(Capability.REQUEST_SERVER, methods=("GET", "HEAD"))
def security(request: HttpRequest, access: Access) -> HttpResponse:
    return _security_page(request, access)


@workspace_view(Capability.REQUEST_SERVER, methods=ACTION_METHODS)
def server_add(request: HttpRequest, access: Access) -> HttpResponse:
    form = ServerForm(request.POST)
    if form.is_valid():
        ok, server = attempt(
            request,
            lambda: gateway_services.server_add(access=access, **form.cleaned_data, ip=_ip(request)),
            form=form,
        )
        if ok:
            if server.status == UpstreamServer.Status.REQUESTED:
                messages.success(request, f"Server “{server.slug}” requested; an Owner or Admin will review it.")
            elif server.health_ok:
                messages.success(request, f"Server “{server.slug}” added and approved: {server.health_detail} pinned.")
            else:
                messages.warning(
                    request,
                    f"Server “{server.slug}” added, but it did not answer ({server.health_detail}). "
                    "Its tools wait for approval here once it does.",
                )
            return _back_to_security(access, "servers")
    return _security_page(request, access, server_form=form)


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def server_approve(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    server = _server(access, pk)
    ok, _ = attempt(request, lambda: gateway_services.server_approve(access=access, server=server, ip=_ip(request)))
    if ok:
        messages.success(request, f"Server “{server.slug}” approved ({server.health_detail}).")
    return _back_to_security(access, "servers")


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def server_enabled(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    server = _server(access, pk)
    enabled = request.POST.get("enabled") == "1"
    ok, _ = attempt(
        request,
        lambda: gateway_services.server_set_enabled(access=access, server=server, enabled=enabled, ip=_ip(request)),
    )
    if ok:
        messages.success(request, f"Server “{server.slug}” {'enabled' if enabled else 'disabled'}.")
    return _back_to_security(access, "servers")


@workspace_view(Capability.MANAGE_SERVERS, methods=ACTION_METHODS)
def server_health(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """*Check now*: the check runs as a task after this request's transaction (at once
    without a broker); the page shows "checking…" until it has run."""
    server = _server(access, pk)
    ok, _ = attempt(
        request, lambda: gateway_services.server_check_request(access=access, server=server, ip=_ip(request))
    )
    if ok:
        server.refresh_from_db()
        if server.checking:
            messages.info(request, f"Checking server “{server.slug}”; the result appears here shortly.")
        elif server.health_ok:
            messages.success(request, f"Server “{server.slug}” answered: {server.health_detail}.")
        else:
            messages.warning(request, f"Server “{server.slug}” did not answer: {server.health_detail}.")
    return _back_to_security(access, "servers")


@workspace_view(Capability.MANAGE_SERVERS, methods=PAGE_METHODS)
def server_remove(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST removes."""
    server = _server(access, pk)
    if confirmed(request):
        ok, _ = attempt(request, lambda: gateway_services.server_remove(access=access, server=server, ip=_ip(request)))
        if ok:
            messages.success(request, f"Server “{server.slug}” removed.")
        return _back_to_security(access, "servers")
    rules = selectors.allowlists(access.workspace)
    naming = sum(1 for user_rules in rules.values() if any(r.split(":", 1)[0] == server.slug for r in user_rules))
    context = _workspace_context(access, server=server, members_with_rules=naming)
    confirmation = Confirmation(
        question=f"Remove the server {server.slug}?",
        button=f"Remove {server.slug}",
        cancel=reverse("portal:security", args=[access.workspace.slug]) + "#servers",
    )
    return _ask(request, context, confirmation, template="portal/security_server_remove.html")


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=ACTION_METHODS)
def security_policy(request: HttpRequest, access: Access) -> HttpResponse:
    form = PolicyForm(request.POST)
    if form.is_valid():
        data, ip = form.cleaned_data, _ip(request)

        def save() -> None:
            # One form, one decision: all three settings change together or not at all.
            with transaction.atomic():
                workspace_services.workspace_set_enforcement(access=access, mode=data["enforcement"], ip=ip)
                workspace_services.workspace_set_deny_by_default(access=access, deny=data["deny_by_default"], ip=ip)
                workspace_services.workspace_set_rate_limit(
                    access=access, per_minute=data["rate_limit_per_minute"], ip=ip
                )

        ok, _ = attempt(request, save, form=form)
        if ok:
            messages.success(request, "Enforcement settings saved.")
            return _back_to_security(access, "enforcement")
        access.workspace.refresh_from_db()  # the services changed it in memory before the rollback
    return _security_page(request, access, policy_form=form)


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=PAGE_METHODS)
def allowlist_edit(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, workspace=access.workspace)
    if request.method == "POST":
        form = AllowlistForm(request.POST)
        if form.is_valid():
            ok, saved = attempt(
                request,
                lambda: gateway_services.allowlist_set(
                    access=access, member=membership.user, rules=form.chosen(), ip=_ip(request)
                ),
                form=form,
            )
            if ok:
                messages.success(request, f"Allowlist of {membership.user.email} saved: {len(saved)} rules.")
                for warning in saved.warnings:
                    messages.warning(request, warning)
                return _back_to_security(access, "allowlists")
        # Shown again with the errors: the picker needs the tool list after all.
        form.servers = selectors.live_tools(access.workspace)
    else:
        servers = selectors.live_tools(access.workspace)
        rules = selectors.allowlists(access.workspace).get(membership.user_id, [])
        form = AllowlistForm(initial=AllowlistForm.initial_for(rules, servers), servers=servers)
    context = _workspace_context(access, membership=membership, form=form)
    return render(request, "portal/security_allowlist.html", context)


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=ACTION_METHODS)
def pin_approve(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    pin = get_object_or_404(ToolPin.objects.select_related("server"), pk=pk, server__workspace=access.workspace)
    ok, _ = attempt(request, lambda: gateway_services.pin_approve(access=access, pin=pin, ip=_ip(request)))
    if ok:
        messages.success(request, f"New definition of {pin.server.slug}:{pin.tool_name} approved.")
    return _back_to_security(access, "pins")


@workspace_view(Capability.MANAGE_ALLOWLISTS, methods=ACTION_METHODS)
def pin_reject(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    pin = get_object_or_404(ToolPin.objects.select_related("server"), pk=pk, server__workspace=access.workspace)
    ok, _ = attempt(request, lambda: gateway_services.pin_reject(access=access, pin=pin, ip=_ip(request)))
    if ok:
        messages.success(
            request, f"New definition of {pin.server.slug}:{pin.tool_name} rejected; the tool stays withheld."
        )
    return _back_to_security(access, "pins")


# --- Invitations (the invitee's side) ---------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def invitation(request: HttpRequest, secret: str) -> HttpResponse:
    if request.method == "POST":
        ok, membership = attempt(
            request,
            lambda: workspace_services.invitation_accept(user=request.user, raw=secret, ip=_ip(request)),
        )
        if ok:
            messages.success(
                request, f"Welcome to “{membership.workspace.name}”. You joined as {membership.get_role_display()}."
            )
            return redirect("portal:workspace", slug=membership.workspace.slug)
    found = workspace_services.invitation_lookup(secret)
    context = {
        "invitation": found,
        "email_matches": found is not None and found.email.lower() == request.user.email.lower(),
    }
    return render(request, "portal/invitation.html", context, status=404 if found is None else 200)


# --- Personal API keys --------------------------------------------------------------


NEW_API_KEY = "portal:new-api-key"  # session key of a raw API key waiting to be shown once
ACCOUNT_LAYOUT = "allauth/layouts/manage.html"


@never_cache  # the page after creating one carries the raw key: no cache may keep it
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """The list and the create form. A created key's raw value shows on the next GET only."""
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        _, raw = account_services.api_key_create(user=request.user, name=form.cleaned_data["name"], ip=_ip(request))
        _hold_secret(request, NEW_API_KEY, raw)
        return redirect("portal:api-keys")
    keys = ApiKey.objects.filter(user=request.user).order_by("-created_at", "-id")
    context = {"form": form, "issued": _take_secret(request, NEW_API_KEY), "keys": keys}
    return render(request, "portal/api_keys.html", context)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST revokes."""
    key = get_object_or_404(ApiKey, pk=pk, user=request.user)
    if not key.is_active:
        messages.info(request, f"API key {key.prefix}… was already revoked.")
        return redirect("portal:api-keys")
    if not confirmed(request):
        confirmation = Confirmation(
            question=f"Revoke the API key {key.prefix}…?",
            facts=(
                ("Name", key.name),
                ("Created", _when(key.created_at)),
                ("Last used", _when(key.last_used_at)),
            ),
            consequence="Scripts using it are refused from now on. This cannot be undone: create a new key for them.",
            button=f"Revoke {key.prefix}…",
            cancel=reverse("portal:api-keys"),
        )
        return _ask(request, {"layout": ACCOUNT_LAYOUT}, confirmation)
    account_services.api_key_revoke(user=request.user, key=key, ip=_ip(request))
    messages.success(request, f"API key {key.prefix}… revoked.")
    return redirect("portal:api-keys")
