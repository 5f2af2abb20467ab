"""/api/v1/tools/: the config validator and the scanner over the API. Open to everybody, as
the pages are, and throttled per client IP (they may send requests out: endpoint checks)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from apps.configtools import scanner, validator
from apps.configtools.api import serializers
from apps.core.http import client_ip

TAGS = ["tools"]


class ToolsThrottle(SimpleRateThrottle):
    """Per client IP, signed in or not: ``MCPNEST_TOOLS_API_RATE`` (DRF's "30/min" form)."""

    scope = "tools"

    def get_rate(self) -> str:
        return settings.MCPNEST_TOOLS_API_RATE

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}


class ValidateView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ToolsThrottle]

    @extend_schema(
        tags=TAGS,
        summary="Validate an MCP client config",
        description="Detects the client (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf) unless named, and "
        "reports syntax errors with line and column, schema errors and semantic problems with JSON paths and fixes. "
        "With check_endpoints, sends an MCP initialize to each public remote URL. Nothing is stored.",
        request=serializers.ValidateRequestSerializer,
        responses={200: serializers.ReportSerializer},
    )
    def post(self, request: Request) -> Response:
        given = serializers.ValidateRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        report = validator.validate(
            data["config"], client=data.get("client") or None, check_endpoints=data["check_endpoints"]
        )
        return Response(serializers.ReportSerializer(report.as_dict()).data)


class ScanView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ToolsThrottle]

    @extend_schema(
        tags=TAGS,
        summary="Scan an MCP client config for security problems",
        description="Offline static analysis: plaintext secrets (masked), unpinned packages and images, http:// "
        "remotes, risky docker options, broad filesystem roots, dangerous environment, shell wrappers, archived or "
        "deprecated servers and tool-description poisoning. Nothing is stored.",
        request=serializers.ScanRequestSerializer,
        responses={200: serializers.ScanResponseSerializer},
    )
    def post(self, request: Request) -> Response:
        given = serializers.ScanRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        findings = scanner.scan(given.validated_data["config"], tools=given.validated_data.get("tools"))
        return Response(serializers.ScanResponseSerializer({"findings": [f.as_dict() for f in findings]}).data)
