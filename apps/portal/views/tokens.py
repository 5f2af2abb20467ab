"""Gateway tokens: the list, creating one (its raw value shown once) and revoking."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from apps.core.http import client_ip
from apps.portal.forms import WORKSPACE_HOLDER, TokenCreateForm
from apps.portal.views.base import (
    Confirmation,
    ask,
    attempt,
    confirmed,
    hold_secret,
    page_of,
    take_secret,
    when,
    workspace_context,
    workspace_view,
)
from apps.rbac.access import Access
from apps.rbac.roles import Capability
from apps.tokens import services as token_services
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import tokens_visible_to
from apps.workspaces.selectors import memberships_by_email


def _new_token_key(access: Access) -> str:
    return f"portal:new-token:{access.workspace.pk}"


@never_cache  # the page after creating one carries the raw token: no cache may keep it
@workspace_view(Capability.MANAGE_OWN_TOKENS)
def tokens(request: HttpRequest, access: Access) -> HttpResponse:
    """The list and the create form. A created token's raw value shows on the next GET only."""
    memberships = (
        list(memberships_by_email(workspace=access.workspace)) if access.can(Capability.MANAGE_TOKENS) else None
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
                ip=client_ip(request),
            ),
            form=form,
        )
        if ok:
            # Redirect, so that reloading the page shows it rather than creating another.
            hold_secret(request, _new_token_key(access), issued.raw)
            return redirect("portal:tokens", slug=access.workspace.slug)
    visible = tokens_visible_to(access=access).select_related("user", "created_by").order_by("-created_at", "-id")
    page = page_of(visible, request)
    context = workspace_context(access, form=form, issued=take_secret(request, _new_token_key(access)), page=page)
    return render(request, "portal/tokens.html", context)


@workspace_view(Capability.MANAGE_OWN_TOKENS)
def token_revoke(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST revokes."""
    # Looked up among the tokens the actor can see, so others' token ids don't even resolve.
    token = get_object_or_404(tokens_visible_to(access=access).select_related("user", "workspace"), pk=pk)
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
                ("Created", when(token.created_at)),
                ("Last used", when(token.last_used_at)),
            ),
            consequence=(
                "Every client using it is refused from now on. This cannot be undone: to reconnect, create a new token."
            ),
            button=f"Revoke {token.prefix}…",
            cancel=reverse("portal:tokens", args=[access.workspace.slug]),
        )
        return ask(request, workspace_context(access), confirmation)
    ok, revoked = attempt(
        request, lambda: token_services.token_revoke(access=access, token=token, ip=client_ip(request))
    )
    if ok:
        if revoked:
            messages.success(request, f"Token {token.prefix}… revoked.")
        else:
            messages.info(request, f"Token {token.prefix}… was already revoked.")
    return redirect("portal:tokens", slug=access.workspace.slug)
