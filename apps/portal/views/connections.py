"""Connected clients: the OAuth clients members allowed to use the gateway as them, and
disconnecting one (which revokes every token it holds for that member here)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from oauth2_provider.models import Application

from apps.core.http import client_ip
from apps.oauth import services as oauth_services
from apps.oauth.models import Connection
from apps.oauth.selectors import connections_visible_to
from apps.portal.views.base import (
    Confirmation,
    ask,
    attempt,
    confirmed,
    page_of,
    when,
    workspace_context,
    workspace_view,
)
from apps.rbac.access import Access
from apps.rbac.roles import Capability

# How the client told us who it is: people know these by their short names.
REGISTRATION_LABELS = {
    Application.RegistrationSource.DCR: "DCR",
    Application.RegistrationSource.CIMD: "Metadata document",
    Application.RegistrationSource.MANUAL: "Registered by an operator",
}


@dataclass(frozen=True)
class ConnectionRow:
    connection: Connection
    registration: str
    redirect_hosts: list[str]


def redirect_hosts(application: Application) -> list[str]:
    """Where the client's sign-ins return to: the host of each web redirect URI, or the
    private-use scheme a desktop client registered (``cursor:``), which names the app."""
    hosts = set()
    for uri in application.redirect_uris.split():
        parts = urlsplit(uri)
        if parts.scheme in ("http", "https"):
            hosts.add(parts.hostname or uri)
        elif parts.scheme:
            hosts.add(f"{parts.scheme}:")
    return sorted(hosts)


def _row(connection: Connection) -> ConnectionRow:
    application = connection.application
    registration = REGISTRATION_LABELS.get(application.registration_source, application.registration_source)
    return ConnectionRow(connection=connection, registration=registration, redirect_hosts=redirect_hosts(application))


def _list_url(access: Access) -> str:
    return reverse("portal:connections", args=[access.workspace.slug])


@workspace_view(Capability.MANAGE_OWN_TOKENS, methods=("GET", "HEAD"))
def connections(request: HttpRequest, access: Access) -> HttpResponse:
    """The member's own connections; token managers see the whole workspace's."""
    visible = connections_visible_to(access=access).order_by("-consented_at", "-id")
    page = page_of(visible, request)
    rows = [_row(connection) for connection in page.rows]
    everybody = access.can(Capability.MANAGE_TOKENS)
    context = workspace_context(access, page=page, rows=rows, everybody=everybody)
    return render(request, "portal/connections.html", context)


@workspace_view(Capability.MANAGE_OWN_TOKENS)
def connection_disconnect(request: HttpRequest, access: Access, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST disconnects.

    Another workspace's connection answers 404 like anything of another workspace; another
    member's, to a member, answers 403 (before the confirmation page, which would show whose
    client it is), as ``connection_revoke`` itself would refuse it.
    """
    connection = get_object_or_404(
        Connection.objects.select_related("application", "user"), pk=pk, workspace=access.workspace
    )
    if not connections_visible_to(access=access).filter(pk=connection.pk).exists():
        message = "Only the workspace's Owners and Admins can disconnect another member's client."
        return render(request, "portal/forbidden.html", workspace_context(access, message=message), status=403)
    client = oauth_services.client_repr(connection.application)
    if not confirmed(request):
        facts = [("Client", client), ("Client ID", connection.application.client_id)]
        if connection.user_id != access.user.pk:
            facts.append(("For", connection.user.email))
        facts += [("Consented", when(connection.consented_at)), ("Last used", when(connection.last_used_at))]
        confirmation = Confirmation(
            question=f"Disconnect {client}?",
            facts=tuple(facts),
            consequence=(
                "Its tokens for this workspace stop working at once. To use it again, connect it again: "
                "the client asks to sign in and to be allowed once more."
            ),
            button=f"Disconnect {client}",
            cancel=_list_url(access),
        )
        return ask(request, workspace_context(access), confirmation)
    ok, revoked = attempt(
        request,
        lambda: oauth_services.connection_revoke(access=access, connection=connection, ip=client_ip(request)),
    )
    if ok:
        messages.success(request, f"{client} disconnected. {_stopped(revoked)}")
    return redirect(_list_url(access))


def _stopped(revoked: int) -> str:
    if revoked == 0:
        return "It held no live tokens."
    if revoked == 1:
        return "1 token stopped working."
    return f"{revoked} tokens stopped working."
