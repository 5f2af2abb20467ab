"""/api/v1/me/: the signed-in person's own personal API keys."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import services
from apps.accounts.api import serializers
from apps.accounts.api.schema import ApiKeyAuthenticationScheme  # noqa: F401 - importing registers it
from apps.accounts.models import ApiKey
from apps.accounts.selectors import api_keys_of
from apps.core.api import NewestFirstPagination

TAGS = ["me"]


class SignedInSession(permissions.BasePermission):
    """Keys are managed from a browser session, so a leaked key cannot mint or hide other keys."""

    message = "Manage API keys while signed in to MCPNest in a browser; an API key cannot list, create or revoke keys."

    def has_permission(self, request: Request, view: object) -> bool:
        # Session authentication leaves request.auth empty; an API key puts itself there.
        return request.auth is None


class _OwnKeysMixin:
    permission_classes = [permissions.IsAuthenticated, SignedInSession]
    serializer_class = serializers.ApiKeySerializer
    queryset = ApiKey.objects.none()

    def get_queryset(self) -> QuerySet[ApiKey]:
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return api_keys_of(user=self.request.user)


class ApiKeyListView(_OwnKeysMixin, generics.ListAPIView):
    """Your personal API keys; each acts as you, with your roles."""

    pagination_class = NewestFirstPagination

    @extend_schema(tags=TAGS, summary="Your personal API keys")
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        tags=TAGS,
        summary="Create a personal API key",
        description="The response carries the raw `key` exactly once; only its digest is kept.",
        request=serializers.ApiKeyCreateSerializer,
        responses={201: serializers.IssuedApiKeySerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = serializers.ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = services.api_key_create(user=request.user, name=serializer.validated_data["name"])
        body = serializers.IssuedApiKeySerializer(key, context={"raw": raw}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyRevokeView(_OwnKeysMixin, generics.GenericAPIView):
    """A revoked key is refused at once with 401."""

    @extend_schema(
        tags=TAGS, summary="Revoke one of your API keys", request=None, responses={200: serializers.ApiKeySerializer}
    )
    def post(self, request: Request, pk: int) -> Response:
        key = generics.get_object_or_404(self.get_queryset(), pk=pk)
        services.api_key_revoke(user=request.user, key=key)
        return Response(self.get_serializer(key).data)
