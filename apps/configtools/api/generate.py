"""/api/v1/tools/generate/ and /generations/: the MCP generator over the API, for signed-in
users (session or API key), with the same per-user limit as the page."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.configtools import services
from apps.configtools.api.views import TAGS
from apps.configtools.models import Generation
from apps.core.api import NewestFirstPagination


class GenerateRequestSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=500, help_text="What the server should do, in plain English.")
    language = serializers.ChoiceField(choices=Generation.Language.choices, default=Generation.Language.TYPESCRIPT)


class GenerationSerializer(serializers.ModelSerializer):
    checked = serializers.SerializerMethodField(help_text="It compiled, started over stdio and listed its tools.")

    class Meta:
        model = Generation
        fields = [
            "id",
            "prompt",
            "language",
            "engine",
            "status",
            "checked",
            "name",
            "description",
            "code",
            "install",
            "tools",
            "check_output",
            "created_at",
        ]

    def get_checked(self, generation: Generation) -> bool:
        return generation.status == Generation.Status.CHECKED


class GenerateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="Generate an MCP server from a description, checked before it is returned",
        description="TypeScript is compiled with tsc against @modelcontextprotocol/sdk, Python byte-compiled; both "
        "are started over stdio and their tools listed. `status` is `checked` only if all of that worked; "
        "otherwise `check_output` holds the compiler's or the run's message. Rate-limited per user (429).",
        request=GenerateRequestSerializer,
        responses={201: GenerationSerializer},
    )
    def post(self, request: Request) -> Response:
        given = GenerateRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            generation = services.generation_run(actor=request.user, **given.validated_data)
        except services.RateLimited as exc:
            return Response({"error": str(exc)}, status=429)
        return Response(GenerationSerializer(generation).data, status=201)


class GenerationListView(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = GenerationSerializer
    pagination_class = NewestFirstPagination
    queryset = Generation.objects.none()

    def get_queryset(self):
        return Generation.objects.filter(user=self.request.user)

    @extend_schema(tags=TAGS, summary="Your own generations, newest first")
    def get(self, request: Request) -> Response:
        return self.list(request)
