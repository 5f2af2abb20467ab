"""Gateway tokens over REST: members manage their own, managers everybody's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import NewestFirstPagination
from apps.core.errors import RuleViolation
from apps.core.http import client_ip
from apps.rbac.roles import Capability
from apps.tokens import services
from apps.tokens.api import serializers
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import tokens_visible_to
from apps.workspaces.api.scoping import WorkspaceScopedMixin

if TYPE_CHECKING:
    from apps.accounts.models import User

TAGS = ["tokens"]


class TokenListView(WorkspaceScopedMixin, generics.ListAPIView):
    """Gateway tokens. Members see and issue their own; token managers see and issue anyone's."""

    serializer_class = serializers.TokenSerializer
    pagination_class = NewestFirstPagination
    queryset = GatewayToken.objects.none()
    required_capabilities = {"GET": Capability.MANAGE_OWN_TOKENS}

    def get_queryset(self) -> QuerySet[GatewayToken]:
        if getattr(self, "swagger_fake_view", False):
            return GatewayToken.objects.none()
        return tokens_visible_to(access=self.access).select_related("user", "created_by")

    @extend_schema(tags=TAGS, summary="Gateway tokens: your own, or all of them for token managers")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        tags=TAGS,
        summary="Issue a gateway token",
        description="The response carries the raw `token` exactly once; only its digest is kept.",
        request=serializers.TokenCreateSerializer,
        responses={201: serializers.IssuedTokenSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        serializer = serializers.TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = None if data["kind"] == GatewayToken.Kind.WORKSPACE else self._member(data.get("member_email"))
        issued = services.token_create(
            access=self.access,
            member=member,
            name=data["name"],
            expires_days=data.get("expires_days"),
            kind=data["kind"],
            ip=client_ip(request),
        )
        body = serializers.IssuedTokenSerializer(issued.token, context={"raw": issued.raw}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def _member(self, email: str | None) -> User:
        user = self.request.user
        if not email or email.lower() == user.email:
            return user
        membership = self.access.workspace.memberships.select_related("user").filter(user__email=email.lower()).first()
        if membership is None:
            # Only someone allowed to issue tokens for others learns who is not a member;
            # anyone else gets the same 403 as for an existing member.
            self.access.require(Capability.MANAGE_TOKENS)
            raise RuleViolation(f"{email} is not a member of {self.access.workspace.slug}.")
        return membership.user


class TokenRevokeView(WorkspaceScopedMixin, generics.GenericAPIView):
    """Revoking takes effect on every gateway worker at once; revoking twice changes nothing."""

    serializer_class = serializers.TokenSerializer
    queryset = GatewayToken.objects.none()

    @extend_schema(
        tags=TAGS, summary="Revoke a gateway token", request=None, responses={200: serializers.TokenSerializer}
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        token = generics.get_object_or_404(
            GatewayToken.objects.select_related("user", "created_by"), workspace=self.access.workspace, pk=pk
        )
        services.token_revoke(access=self.access, token=token, ip=client_ip(request))
        return Response(self.get_serializer(token).data)
