"""The gateway over REST: upstream servers, allowlists, the enforcement policy and tool pins.

Thin, like the portal's Security tab: the access gate, a serializer, a service. The
services check the capability again and write the audit rows; nothing here writes either.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import NewestFirstPagination
from apps.core.errors import RuleViolation
from apps.core.http import client_ip
from apps.gateway import selectors
from apps.gateway import services as gateway_services
from apps.gateway.api import serializers
from apps.gateway.models import ToolPin, UpstreamServer
from apps.rbac.roles import Capability
from apps.workspaces import services as workspace_services
from apps.workspaces.api.scoping import WorkspaceScopedMixin
from apps.workspaces.api.serializers import GatewayPolicySerializer
from apps.workspaces.models import Membership, Workspace

TAGS = ["gateway"]


def _valid(serializer_class: type, request: Request, **kwargs: Any) -> dict:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- upstream servers ----------------------------------------------------------------------


class _ServerMixin(WorkspaceScopedMixin):
    def server(self) -> UpstreamServer:
        return generics.get_object_or_404(
            UpstreamServer.objects.select_related("workspace", "requested_by", "approved_by", "check_requested_by"),
            workspace=self.access.workspace,
            pk=self.kwargs["pk"],
        )


class ServerListView(_ServerMixin, generics.ListAPIView):
    """Upstream servers. Owners and Admins see all of them; a Member sees the ones they requested."""

    serializer_class = serializers.ServerSerializer
    pagination_class = NewestFirstPagination
    queryset = UpstreamServer.objects.none()
    required_capabilities = {"GET": Capability.REQUEST_SERVER}

    def get_queryset(self) -> QuerySet[UpstreamServer]:
        if getattr(self, "swagger_fake_view", False):
            return UpstreamServer.objects.none()
        servers = UpstreamServer.objects.filter(workspace=self.access.workspace).select_related(
            "requested_by", "approved_by", "check_requested_by"
        )
        if not self.access.can(Capability.MANAGE_SERVERS):
            # As in the portal: Members see what they asked for, not the workspace's upstream URLs.
            servers = servers.filter(requested_by=self.request.user)
        return servers

    @extend_schema(tags=TAGS, summary="Upstream servers: all of them (Admins), or your requests (Members)")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        tags=TAGS,
        summary="Add a server (Admins: approved at once) or request one (Members: waits for approval)",
        description=(
            "An Owner or Admin adds the server approved: a task then pins the definition of every tool it offers "
            "(`checking` until it has run; then status `approved`, and `health_ok` says whether it answered). "
            "A Member's server is a request "
            "(status `requested`) that an Owner or Admin approves or rejects. `headers` are never returned."
        ),
        request=serializers.ServerCreateSerializer,
        responses={201: serializers.ServerSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(serializers.ServerCreateSerializer, request)
        server = gateway_services.server_add(access=self.access, ip=client_ip(request), **data)
        return Response(self.get_serializer(server).data, status=status.HTTP_201_CREATED)


class ServerDetailView(_ServerMixin, generics.GenericAPIView):
    """One upstream server."""

    serializer_class = serializers.ServerSerializer
    queryset = UpstreamServer.objects.none()
    required_capabilities = {"PATCH": Capability.MANAGE_SERVERS, "DELETE": Capability.MANAGE_SERVERS}

    @extend_schema(tags=TAGS, summary="One upstream server (Admins; Members: their own requests)")
    def get(self, request: Request, slug: str, pk: int) -> Response:
        server = self.server()
        if server.requested_by_id != request.user.pk:
            self.access.require(Capability.MANAGE_SERVERS)
        return Response(self.get_serializer(server).data)

    @extend_schema(
        tags=TAGS,
        summary="Change a server's URL, timeout or concurrency limit (Admins)",
        request=serializers.ServerUpdateSerializer,
        responses={200: serializers.ServerSerializer},
    )
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        data = _valid(serializers.ServerUpdateSerializer, request)
        server = self.server()
        saved = gateway_services.server_update(
            access=self.access,
            server=server,
            url=data.get("url", server.url),
            timeout_seconds=data.get("timeout_seconds", server.timeout_seconds),
            max_concurrency=data.get("max_concurrency", server.max_concurrency),
            ip=client_ip(request),
        )
        return Response(self.get_serializer(saved).data)

    @extend_schema(tags=TAGS, summary="Remove a server (Admins)", responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        gateway_services.server_remove(access=self.access, server=self.server(), ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ServerActionView(_ServerMixin, generics.GenericAPIView):
    """POST /servers/<pk>/<action>/: Owners and Admins only (servers.manage)."""

    serializer_class = serializers.ServerSerializer
    queryset = UpstreamServer.objects.none()
    required_capabilities = {"POST": Capability.MANAGE_SERVERS}

    def respond(self, server: UpstreamServer, code: int = status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(server).data, status=code)


def _server_action(summary: str, description: str = "", code: int = 200) -> Any:
    return extend_schema(
        tags=TAGS,
        summary=summary,
        description=description,
        request=None,
        responses={code: serializers.ServerSerializer},
    )


class ServerApproveView(_ServerActionView):
    @_server_action(
        "Approve a requested server (Admins)",
        "Queues the approval: a task asks the server for its tools, pins the definition of each, and approves "
        "it (status `approved`; audited as server.approved). Until it has run, `checking` is true and "
        "`check_kind` is `approve`: read the server again then. If it does not answer it is approved without "
        "pins, and each tool it later offers waits for approval as a new tool. Asking again while it is "
        "queued changes nothing; approving an approved server is refused.",
        code=202,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        # Queued, as in the portal: an upstream is never contacted inside a request.
        server = gateway_services.server_approve(access=self.access, server=self.server(), ip=client_ip(request))
        return self.respond(server, status.HTTP_202_ACCEPTED)


class ServerRejectView(_ServerActionView):
    @extend_schema(
        tags=TAGS,
        summary="Reject a requested server (Admins)",
        description="The request is removed; the audit trail keeps it (server.removed).",
        request=None,
        responses={204: None},
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        server = self.server()
        if server.status != UpstreamServer.Status.REQUESTED:
            raise RuleViolation(f"Server {server.slug!r} is not a pending request; remove it instead.")
        # No rejection service exists: a rejected request is removed (audited as server.removed).
        gateway_services.server_remove(access=self.access, server=server, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServerEnableView(_ServerActionView):
    @_server_action("Enable a server (Admins)")
    def post(self, request: Request, slug: str, pk: int) -> Response:
        server = self.server()
        gateway_services.server_set_enabled(access=self.access, server=server, enabled=True, ip=client_ip(request))
        return self.respond(server)


class ServerDisableView(_ServerActionView):
    @_server_action("Disable a server (Admins)", "The gateway stops offering its tools within a second.")
    def post(self, request: Request, slug: str, pk: int) -> Response:
        server = self.server()
        gateway_services.server_set_enabled(access=self.access, server=server, enabled=False, ip=client_ip(request))
        return self.respond(server)


class ServerHealthCheckView(_ServerActionView):
    @_server_action(
        "Check a server (Admins)",
        "Queues a check: it connects to the upstream, records whether it answered (`health_ok`, `health_detail`; "
        "a requested server's `offered_tools`), holds changed tools for approval, and is audited "
        "(server.health_checked). `checking` is true until it has run: read the server again then "
        "(`check_state` done, or failed with `check_error`). Asking again meanwhile queues nothing more.",
        code=202,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        # Queued, as the portal's "Check now": an upstream is never contacted inside a request.
        server = gateway_services.server_check_request(access=self.access, server=self.server(), ip=client_ip(request))
        return self.respond(server, status.HTTP_202_ACCEPTED)


# --- allowlists ------------------------------------------------------------------------------


class _AllowlistMixin(WorkspaceScopedMixin):
    required_capabilities = {
        "GET": Capability.MANAGE_ALLOWLISTS,
        "PUT": Capability.MANAGE_ALLOWLISTS,
    }

    def with_rules(self, memberships: list[Membership]) -> list[Membership]:
        rules = selectors.allowlists(self.access.workspace)
        for membership in memberships:
            membership.rules = rules.get(membership.user_id, [])
        return memberships


class AllowlistListView(_AllowlistMixin, generics.ListAPIView):
    """Every member's allowlist (applies while enforcement is shadow or enforce)."""

    serializer_class = serializers.AllowlistSerializer
    pagination_class = NewestFirstPagination
    queryset = Membership.objects.none()

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return Membership.objects.filter(workspace=self.access.workspace).select_related("user")

    @extend_schema(tags=TAGS, summary="Members' allowlists (Admins)")
    def get(self, request: Request, slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(self.with_rules(page), many=True).data)


class AllowlistDetailView(_AllowlistMixin, generics.GenericAPIView):
    """One member's allowlist, by membership id."""

    serializer_class = serializers.AllowlistSerializer
    queryset = Membership.objects.none()

    def membership(self) -> Membership:
        return generics.get_object_or_404(
            Membership.objects.select_related("user"), workspace=self.access.workspace, pk=self.kwargs["pk"]
        )

    @extend_schema(tags=TAGS, summary="A member's allowlist (Admins)")
    def get(self, request: Request, slug: str, pk: int) -> Response:
        (membership,) = self.with_rules([self.membership()])
        return Response(self.get_serializer(membership).data)

    @extend_schema(
        tags=TAGS,
        summary="Replace a member's allowlist (Admins)",
        description=(
            "Each rule must name a server of the workspace and a tool it offers, or `*`; a tool may be written "
            "as clients see it (with the server's prefix) and is saved as the upstream names it. `warnings` "
            "lists rules saved unchecked (their server has no known tools yet)."
        ),
        request=serializers.AllowlistUpdateSerializer,
        responses={200: serializers.SavedAllowlistSerializer},
    )
    def put(self, request: Request, slug: str, pk: int) -> Response:
        data = _valid(serializers.AllowlistUpdateSerializer, request)
        membership = self.membership()
        saved = gateway_services.allowlist_set(
            access=self.access, member=membership.user, rules=data["rules"], ip=client_ip(request)
        )
        membership.rules, membership.warnings = list(saved), saved.warnings
        return Response(serializers.SavedAllowlistSerializer(membership).data)


# --- the enforcement policy --------------------------------------------------------------------


class PolicyView(WorkspaceScopedMixin, generics.GenericAPIView):
    """Enforcement mode, deny-by-default and the rate limit of the workspace's gateway."""

    serializer_class = GatewayPolicySerializer
    queryset = Workspace.objects.none()
    required_capabilities = {"GET": Capability.MANAGE_ALLOWLISTS, "PATCH": Capability.MANAGE_ALLOWLISTS}

    def _respond(self) -> Response:
        return Response(self.get_serializer(self.access.workspace).data)

    @extend_schema(tags=TAGS, summary="The gateway's enforcement policy (Admins)")
    def get(self, request: Request, slug: str) -> Response:
        return self._respond()

    @extend_schema(
        tags=TAGS,
        summary="Change the enforcement policy (Admins)",
        description="Send any of the fields; if one is refused, none changes.",
        request=GatewayPolicySerializer(partial=True),
        responses={200: GatewayPolicySerializer},
    )
    def patch(self, request: Request, slug: str) -> Response:
        data = _valid(GatewayPolicySerializer, request, partial=True)
        workspace_services.workspace_set_policy(
            access=self.access, policy=workspace_services.GatewayPolicy.pick(data), ip=client_ip(request)
        )
        return self._respond()


# --- tool pins ---------------------------------------------------------------------------------


class PinPagination(CursorPagination):
    ordering = ("id",)


# ToolPin.state as filters.
_WAITING = ~Q(pending_fingerprint="") & Q(rejected_at__isnull=True)
_PIN_STATE = {
    ToolPin.State.APPROVED: Q(pending_fingerprint=""),
    ToolPin.State.PENDING_CHANGE: _WAITING & ~Q(fingerprint=""),
    ToolPin.State.NEW: _WAITING & Q(fingerprint=""),
    ToolPin.State.REJECTED: ~Q(pending_fingerprint="") & Q(rejected_at__isnull=False),
}


class PinListView(WorkspaceScopedMixin, generics.ListAPIView):
    """Pinned tool definitions: what the gateway offers, and changed or new tools it withholds."""

    serializer_class = serializers.PinSerializer
    pagination_class = PinPagination
    queryset = ToolPin.objects.none()
    required_capabilities = {"GET": Capability.MANAGE_ALLOWLISTS}

    def get_queryset(self) -> QuerySet[ToolPin]:
        if getattr(self, "swagger_fake_view", False):
            return ToolPin.objects.none()
        filters = serializers.PinFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        pins = ToolPin.objects.filter(server__workspace=self.access.workspace).select_related(
            "server", "approved_by", "rejected_by"
        )
        if wanted := filters.validated_data.get("status"):
            pins = pins.filter(_PIN_STATE[wanted])
        if server := filters.validated_data.get("server"):
            pins = pins.filter(server__slug=server)
        return pins

    @extend_schema(tags=TAGS, summary="Tool pins and their status (Admins)", parameters=[serializers.PinFilters])
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)


class _PinActionView(WorkspaceScopedMixin, generics.GenericAPIView):
    serializer_class = serializers.PinSerializer
    queryset = ToolPin.objects.none()
    required_capabilities = {"POST": Capability.MANAGE_ALLOWLISTS}

    def pin(self) -> ToolPin:
        return generics.get_object_or_404(
            ToolPin.objects.select_related("server"), server__workspace=self.access.workspace, pk=self.kwargs["pk"]
        )

    def respond(self, pin: ToolPin) -> Response:
        pin = ToolPin.objects.select_related("server", "approved_by", "rejected_by").get(pk=pin.pk)
        return Response(self.get_serializer(pin).data)


class PinApproveView(_PinActionView):
    @extend_schema(
        tags=TAGS,
        summary="Approve a tool's pending definition (Admins)",
        description="The gateway offers the tool again, as now defined.",
        request=None,
        responses={200: serializers.PinSerializer},
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        return self.respond(gateway_services.pin_approve(access=self.access, pin=self.pin(), ip=client_ip(request)))


class PinRejectView(_PinActionView):
    @extend_schema(
        tags=TAGS,
        summary="Reject a tool's pending definition (Admins)",
        description=(
            "The tool stays withheld (status `rejected`) and the refused definition is not offered for approval "
            "again; a later, different definition from the upstream waits for approval as usual."
        ),
        request=None,
        responses={200: serializers.PinSerializer},
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        return self.respond(gateway_services.pin_reject(access=self.access, pin=self.pin(), ip=client_ip(request)))
