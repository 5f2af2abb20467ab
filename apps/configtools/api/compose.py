"""/api/v1/tools/compose/: the composer over the API. Open to everybody, as the page is, and
throttled per client IP like the other tools (a share link is a stored row)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.configtools import composer, services
from apps.configtools.api.views import TAGS, ToolsThrottle
from apps.configtools.models import Composition


class ServerChoiceSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="The server's registry name, as in the marketplace.")
    variables = serializers.DictField(
        child=serializers.CharField(max_length=200, allow_blank=True),
        required=False,
        default=dict,
        help_text="Variable name → the placeholder's name (e.g. WORK_GITHUB_TOKEN); never a value.",
    )


class ComposeRequestSerializer(serializers.Serializer):
    servers = ServerChoiceSerializer(many=True, min_length=1, max_length=composer.MAX_SERVERS)
    title = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")


ComposedSerializer = inline_serializer(
    "Composition",
    {
        "share_id": serializers.CharField(),
        "share_url": serializers.URLField(),
        "title": serializers.CharField(),
        "servers": ServerChoiceSerializer(many=True),
        "configs": serializers.DictField(
            help_text="Client (claude-desktop, claude-code, cursor, vscode, windsurf) → its config file."
        ),
        "created_at": serializers.DateTimeField(),
    },
)


def _composed(request: Request, composition: Composition) -> dict:
    choices = services.composition_choices(composition)
    return {
        "share_id": composition.share_id,
        "share_url": request.build_absolute_uri(reverse("configtools:composition", args=[composition.share_id])),
        "title": composition.title,
        "servers": composition.servers,
        "configs": composer.compose(services.composed_servers(choices)),
        "created_at": composition.created_at,
    }


class ComposeView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ToolsThrottle]

    @extend_schema(
        tags=TAGS,
        summary="Compose marketplace servers into one config per client, behind a share link",
        description="Each server's entry is the marketplace's install config for it; variables stay placeholders "
        "(renamed if asked). A value that is not a placeholder name is refused: a composition never holds a secret.",
        request=ComposeRequestSerializer,
        responses={201: ComposedSerializer},
    )
    def post(self, request: Request) -> Response:
        given = ComposeRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        choices = [
            services.ServerChoice(name=item["name"], variables=dict(item["variables"]))
            for item in given.validated_data["servers"]
        ]
        composition = services.composition_save(
            actor=request.user, servers=choices, title=given.validated_data["title"]
        )
        return Response(_composed(request, composition), status=201)


class CompositionView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(tags=TAGS, summary="A shared composition with its configs", responses={200: ComposedSerializer})
    def get(self, request: Request, share_id: str) -> Response:
        composition = Composition.objects.filter(share_id=share_id).first()
        if composition is None:
            return Response({"error": "No composition with this share id."}, status=404)
        return Response(_composed(request, composition))
