"""Hosted MCP servers over REST: the catalog, the plan's usage, instances and their logs.

Thin, like the portal: the access gate, a serializer, a service or selector. The services
check the capability again and write the audit rows; nothing here writes either.

Plan usage is its own endpoint, GET ``hosting/usage/`` → ``{"used": n, "limit": m}``
(``UsageView``), rather than a header on the instance list: a client sees it in the schema
and needs no page of instances to read it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import NewestFirstPagination
from apps.core.http import client_ip
from apps.hosting import selectors, services
from apps.hosting.api import serializers
from apps.hosting.models import AllowedImage, Instance
from apps.hosting.runtimes import LogChunk
from apps.rbac.roles import Capability
from apps.workspaces.api.scoping import WorkspaceScopedMixin

TAGS = ["hosting"]
# What an instance's representation reads, in one query.
_RELATED = ("workspace", "image", "created_by", "approved_by")


class CatalogView(WorkspaceScopedMixin, generics.ListAPIView):
    """The servers the platform lets a workspace run. One page: the allowlist is short."""

    serializer_class = serializers.ImageSerializer
    pagination_class = None
    queryset = AllowedImage.objects.none()
    required_capabilities = {"GET": Capability.REQUEST_SERVER}

    def get_queryset(self) -> QuerySet[AllowedImage]:
        if getattr(self, "swagger_fake_view", False):
            return AllowedImage.objects.none()
        return selectors.catalog()

    @extend_schema(
        tags=TAGS,
        summary="The catalog of servers a workspace may run",
        description="Verified images first. `required_env_vars` are the credentials to give in `env` when deploying.",
    )
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)


class UsageView(WorkspaceScopedMixin, generics.GenericAPIView):
    """How many instances count against the plan (pending, starting or running), and its limit."""

    serializer_class = serializers.UsageSerializer
    queryset = Instance.objects.none()
    required_capabilities = {"GET": Capability.REQUEST_SERVER}

    @extend_schema(
        tags=TAGS,
        summary="Hosted instances running against the plan, and its limit",
        description="A deploy or an approval is refused while `used` has reached `limit`; requests take no place.",
    )
    def get(self, request: Request, slug: str) -> Response:
        used, limit = services.plan_usage(self.access.workspace)
        return Response(self.get_serializer({"used": used, "limit": limit}).data)


class _InstanceMixin(WorkspaceScopedMixin):
    def instance(self) -> Instance:
        """The instance ``<pk>`` of this workspace if the caller may watch it; else 404, as for a missing one."""
        instance = generics.get_object_or_404(
            Instance.objects.select_related(*_RELATED), workspace=self.access.workspace, pk=self.kwargs["pk"]
        )
        if not selectors.can_watch(access=self.access, instance=instance):
            raise Http404("No such instance.")
        return instance

    def respond(self, instance: Instance, code: int = status.HTTP_200_OK) -> Response:
        # Read again: the services hand back rows without the relations the representation names.
        instance = Instance.objects.select_related(*_RELATED).get(pk=instance.pk)
        return Response(serializers.InstanceSerializer(instance).data, status=code)


class InstanceListView(_InstanceMixin, generics.ListAPIView):
    """Hosted instances, newest first: all of them (Owners, Admins) or the ones you asked for (Members).

    The plan's usage is not here but at GET ``hosting/usage/``.
    """

    serializer_class = serializers.InstanceSerializer
    pagination_class = NewestFirstPagination
    queryset = Instance.objects.none()
    required_capabilities = {"GET": Capability.REQUEST_SERVER}

    def get_queryset(self) -> QuerySet[Instance]:
        if getattr(self, "swagger_fake_view", False):
            return Instance.objects.none()
        return selectors.instances_for(access=self.access).select_related(*_RELATED)

    @extend_schema(tags=TAGS, summary="Hosted instances: all of them (Admins), or your requests (Members)")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        tags=TAGS,
        summary="Deploy a catalog server (Admins) or request one (Members: waits for approval)",
        description=(
            "An Owner or Admin deploys it: a task starts it, waits until it is healthy and adds it to the "
            "workspace's gateway as `server_slug` (status pending → starting → running, or failed with `error`; "
            "read the instance again, or watch `console_url`). A Member's instance is a request (status "
            "`requested`) that an Owner or Admin approves or rejects; it takes no place in the plan until then. "
            "`env` must give every required credential of the image and nothing it does not list; it is never "
            "returned. Refused when the plan's limit is reached (GET hosting/usage/)."
        ),
        request=serializers.InstanceCreateSerializer,
        responses={201: serializers.InstanceSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        serializer = serializers.InstanceCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        instance = services.instance_deploy(
            access=self.access,
            image=data["image"],
            profile=data.get("profile") or None,
            env=data["env"],
            egress=data["egress"],
            ip=client_ip(request),
        )
        return self.respond(instance, status.HTTP_201_CREATED)


class InstanceDetailView(_InstanceMixin, generics.GenericAPIView):
    serializer_class = serializers.InstanceSerializer
    queryset = Instance.objects.none()
    required_capabilities = {"GET": Capability.REQUEST_SERVER}

    @extend_schema(tags=TAGS, summary="One hosted instance (Admins; Members: the ones they asked for)")
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(self.get_serializer(self.instance()).data)


class _InstanceActionView(_InstanceMixin, generics.GenericAPIView):
    """POST /instances/<pk>/<action>/: Owners and Admins only (servers.manage)."""

    serializer_class = serializers.InstanceSerializer
    queryset = Instance.objects.none()
    required_capabilities = {"POST": Capability.MANAGE_SERVERS}


def _action(summary: str, description: str, code: int) -> Any:
    return extend_schema(
        tags=TAGS,
        summary=summary,
        description=description,
        request=None,
        responses={code: serializers.InstanceSerializer},
    )


class InstanceApproveView(_InstanceActionView):
    @_action(
        "Approve a Member's request (Admins)",
        "It is deployed as if the approver had deployed it: a task starts it (status pending → starting → "
        "running or failed); read the instance again. Refused when the plan's limit is reached, or when the "
        "instance is not a request.",
        202,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        instance = services.instance_approve(access=self.access, instance=self.instance(), ip=client_ip(request))
        return self.respond(instance, status.HTTP_202_ACCEPTED)


class InstanceRejectView(_InstanceActionView):
    @_action(
        "Reject a Member's request (Admins)",
        "Status `rejected`; the credentials it was given are deleted. Refused when the instance is not a request.",
        200,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        instance = services.instance_reject(access=self.access, instance=self.instance(), ip=client_ip(request))
        return self.respond(instance)


class InstanceTerminateView(_InstanceActionView):
    @_action(
        "Terminate an instance (Admins)",
        "A task stops it and takes it out of the gateway (status stopping → stopped); read the instance again. "
        "A request is rejected instead. Terminating a stopped instance changes nothing.",
        202,
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        instance = services.instance_terminate(access=self.access, instance=self.instance(), ip=client_ip(request))
        return self.respond(instance, status.HTTP_202_ACCEPTED)


class InstanceLogsView(_InstanceMixin, generics.GenericAPIView):
    serializer_class = serializers.LogsSerializer
    queryset = Instance.objects.none()
    required_capabilities = {"GET": Capability.REQUEST_SERVER}

    @extend_schema(
        tags=TAGS,
        summary="An instance's last output lines (Admins; Members: the ones they asked for)",
        description="Credential values are masked. Empty until it has started. For a live feed, watch `console_url`.",
        parameters=[serializers.LogsQuerySerializer],
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        query = serializers.LogsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        chunk: LogChunk = selectors.instance_logs(
            access=self.access, instance=self.instance(), lines=query.validated_data["lines"]
        )
        return Response(self.get_serializer({"lines": chunk.lines, "cursor": chunk.cursor}).data)
