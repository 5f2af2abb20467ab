"""The audit trail over REST: filtered cursor pages, or a streamed, audited export."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import APISettings

from apps.audit import export
from apps.audit.api import serializers
from apps.audit.export import ExportKind, ExportVia
from apps.audit.models import AuditEvent, ChainedRecord, ToolCall
from apps.audit.services import audit_export_begin
from apps.core.api import NewestFirstPagination
from apps.core.http import client_ip
from apps.rbac.roles import Capability
from apps.workspaces.api.scoping import WorkspaceScopedMixin

TAGS = ["audit"]


class ExportFormatNegotiation(DefaultContentNegotiation):
    """Here ``?format=`` names an export file, not a DRF renderer: negotiate on Accept only.

    Otherwise DRF would answer ``?format=csv`` with a bare 404, and errors would not be JSON.
    """

    settings = APISettings(user_settings={"URL_FORMAT_OVERRIDE": None})


class _AuditListView(WorkspaceScopedMixin, generics.ListAPIView):
    model: ClassVar[type[ChainedRecord]]
    filters_class: ClassVar[type[serializers.AuditFilters]]
    pagination_class = NewestFirstPagination
    content_negotiation_class = ExportFormatNegotiation
    required_capabilities = {"GET": Capability.VIEW_AUDIT}

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.model.objects.none()
        return self.model.objects.filter(workspace_id=self.access.workspace.pk)

    def filter_rows(self, queryset: QuerySet, filters: dict[str, Any]) -> QuerySet:
        """Apply the filters particular to this kind of row."""
        raise NotImplementedError

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response | export.ExportResponse:
        form = self.filters_class(data=request.query_params)
        form.is_valid(raise_exception=True)
        filters = form.validated_data
        rows = self.filter_rows(self.get_queryset(), filters)
        if since := filters.get("since"):
            rows = rows.filter(created_at__gte=since.at)
        if until := filters.get("until"):
            bound = serializers.AuditFilters.upper_bound(until)
            rows = rows.filter(created_at__lt=bound) if until.whole_day else rows.filter(created_at__lte=bound)
        if fmt := filters.get("format"):
            return self.export(rows, fmt, request)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def export(self, rows: QuerySet, fmt: str, request: Request) -> export.ExportResponse:
        workspace = self.access.workspace
        used = {
            name: request.query_params[name]
            for name in self.filters_class().fields
            if name in request.query_params and name != "format"
        }
        # Recorded before the first row is sent, so even an interrupted download is on record.
        audit_export_begin(
            workspace=workspace,
            actor=request.user,
            kind=ExportKind.of(self.model),
            fmt=fmt,
            filters=used,
            via=ExportVia.API,
            ip=client_ip(request),
        )
        # Chain order, so an auditor can re-verify the hashes offline.
        return export.ExportResponse(rows.order_by("seq"), fmt, label=workspace.slug)


def _list_schema(summary: str, serializer: type, filters: type) -> Any:
    return extend_schema(
        tags=TAGS,
        summary=summary,
        parameters=[filters],
        responses={
            200: serializer(many=True),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="With ?format=csv"),
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="With ?format=jsonl"),
        },
    )


class AuditEventListView(_AuditListView):
    """Governance events of the workspace. Add ?format=csv or ?format=jsonl to download them (audited)."""

    model = AuditEvent
    filters_class = serializers.AuditEventFilters
    serializer_class = serializers.AuditEventSerializer
    queryset = AuditEvent.objects.none()

    def filter_rows(self, queryset: QuerySet, filters: dict[str, Any]) -> QuerySet:
        if action := filters.get("action"):
            queryset = queryset.filter(action=action)
        if actor := filters.get("actor"):
            queryset = queryset.filter(actor_repr__iexact=actor)
        return queryset

    @_list_schema(
        "Governance events (who did what), newest first",
        serializers.AuditEventSerializer,
        serializers.AuditEventFilters,
    )
    def get(self, request: Request, slug: str) -> Response | export.ExportResponse:
        return self.list(request)


class ToolCallListView(_AuditListView):
    """Gateway tool calls of the workspace. Add ?format=csv or ?format=jsonl to download them (audited)."""

    model = ToolCall
    filters_class = serializers.ToolCallFilters
    serializer_class = serializers.ToolCallSerializer
    queryset = ToolCall.objects.none()

    def filter_rows(self, queryset: QuerySet, filters: dict[str, Any]) -> QuerySet:
        if member := filters.get("member"):
            queryset = queryset.filter(member_repr__iexact=member)
        if server := filters.get("server"):
            queryset = queryset.filter(server_slug=server)
        if tool := filters.get("tool"):
            queryset = queryset.filter(tool_name=tool)
        if (code := filters.get("status")) is not None:
            queryset = queryset.filter(status=code)
        return queryset

    @_list_schema(
        "Gateway tool calls (metadata only), newest first", serializers.ToolCallSerializer, serializers.ToolCallFilters
    )
    def get(self, request: Request, slug: str) -> Response | export.ExportResponse:
        return self.list(request)
