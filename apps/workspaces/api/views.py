"""Workspaces, members and invitations over REST. Thin: the access gate, a serializer, a service."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import NewestFirstPagination
from apps.core.http import client_ip
from apps.rbac.roles import Capability, Role
from apps.workspaces import selectors, services
from apps.workspaces.api import serializers
from apps.workspaces.api.scoping import WorkspaceScopedMixin
from apps.workspaces.models import Invitation, Membership, Workspace

TAGS = ["workspaces"]


class WorkspaceListView(generics.ListAPIView):
    """Workspaces the caller is a member of, and creating new ones."""

    serializer_class = serializers.WorkspaceSerializer
    pagination_class = NewestFirstPagination
    queryset = Workspace.objects.none()

    def get_queryset(self) -> QuerySet[Workspace]:
        if getattr(self, "swagger_fake_view", False):
            return Workspace.objects.none()
        return selectors.workspaces_with_role(user=self.request.user)

    @extend_schema(tags=TAGS, summary="Workspaces you are a member of")
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(
        tags=TAGS,
        summary="Create a workspace (you become its Owner)",
        request=serializers.WorkspaceCreateSerializer,
        responses={201: serializers.WorkspaceSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _valid(serializers.WorkspaceCreateSerializer, request)
        workspace = services.workspace_create(actor=request.user, ip=client_ip(request), **data)
        workspace.user_role = Role.OWNER
        return Response(self.get_serializer(workspace).data, status=status.HTTP_201_CREATED)


class WorkspaceDetailView(WorkspaceScopedMixin, generics.GenericAPIView):
    """One workspace. A slug you are not a member of answers 404, like one that does not exist."""

    serializer_class = serializers.WorkspaceSerializer
    queryset = Workspace.objects.none()
    lookup_field = "slug"

    def _respond(self) -> Response:
        workspace = self.access.workspace
        workspace.user_role = self.access.role
        return Response(self.get_serializer(workspace).data)

    @extend_schema(tags=TAGS, summary="One workspace")
    def get(self, request: Request, slug: str) -> Response:
        return self._respond()

    @extend_schema(
        tags=TAGS,
        summary="Change name, plan (Owners), or the gateway policy (Admins)",
        request=serializers.WorkspaceUpdateSerializer(partial=True),
        responses={200: serializers.WorkspaceSerializer},
    )
    def patch(self, request: Request, slug: str) -> Response:
        data = _valid(serializers.WorkspaceUpdateSerializer, request, partial=True)
        ip = client_ip(request)
        policy = services.GatewayPolicy.pick(data)
        # One request, one outcome: if any part is refused, none of it is applied.
        with transaction.atomic():
            if "name" in data or "plan" in data:
                services.workspace_update(access=self.access, name=data.get("name"), plan=data.get("plan"), ip=ip)
            if policy.given():
                services.workspace_set_policy(access=self.access, policy=policy, ip=ip)
        return self._respond()

    @extend_schema(tags=TAGS, summary="Delete the workspace (Owners); revokes all its tokens", responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        services.workspace_delete(access=self.access, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(WorkspaceScopedMixin, generics.ListAPIView):
    """The workspace's members and their roles."""

    serializer_class = serializers.MemberSerializer
    pagination_class = NewestFirstPagination
    queryset = Membership.objects.none()
    required_capabilities = {"GET": Capability.VIEW_MEMBERS}

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return selectors.memberships_by_email(workspace=self.access.workspace)

    @extend_schema(tags=TAGS, summary="Members of the workspace (Admins)")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)


class MemberDetailView(WorkspaceScopedMixin, generics.GenericAPIView):
    """Change a role or remove a member. Admins manage Members; Owners manage everyone."""

    serializer_class = serializers.MemberSerializer
    queryset = Membership.objects.none()

    def get_object(self) -> Membership:
        return generics.get_object_or_404(
            Membership.objects.select_related("user"), workspace=self.access.workspace, pk=self.kwargs["pk"]
        )

    @extend_schema(
        tags=TAGS,
        summary="Change a member's role",
        request=serializers.MemberUpdateSerializer,
        responses={200: serializers.MemberSerializer},
    )
    def patch(self, request: Request, slug: str, pk: int) -> Response:
        data = _valid(serializers.MemberUpdateSerializer, request)
        membership = services.member_change_role(
            access=self.access, membership=self.get_object(), role=data["role"], ip=client_ip(request)
        )
        return Response(self.get_serializer(membership).data)

    @extend_schema(
        tags=TAGS, summary="Remove a member, or leave; revokes their tokens in this workspace", responses={204: None}
    )
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        services.member_remove(access=self.access, membership=self.get_object(), ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(WorkspaceScopedMixin, generics.ListAPIView):
    """Invitations to join the workspace; a new one replaces a pending one for the same address."""

    serializer_class = serializers.InvitationSerializer
    pagination_class = NewestFirstPagination
    queryset = Invitation.objects.none()
    required_capabilities = {"GET": Capability.MANAGE_MEMBERS}

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return Invitation.objects.filter(workspace=self.access.workspace).select_related("invited_by")

    @extend_schema(tags=TAGS, summary="Invitations of the workspace (Admins)")
    def get(self, request: Request, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        tags=TAGS,
        summary="Invite someone by email",
        description="The single-use link is emailed to the invitee; it is never returned by the API.",
        request=serializers.InvitationCreateSerializer,
        responses={201: serializers.InvitationSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(serializers.InvitationCreateSerializer, request)
        invitation, _secret = services.invitation_create(
            access=self.access,
            email=data["email"],
            role=data["role"],
            replace=data["replace"],
            base_url=request.build_absolute_uri("/").rstrip("/"),
            ip=client_ip(request),
        )
        return Response(self.get_serializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(WorkspaceScopedMixin, generics.GenericAPIView):
    """One invitation."""

    serializer_class = serializers.InvitationSerializer
    queryset = Invitation.objects.none()

    @extend_schema(tags=TAGS, summary="Revoke a pending invitation", responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        invitation = generics.get_object_or_404(Invitation, workspace=self.access.workspace, pk=pk)
        services.invitation_revoke(access=self.access, invitation=invitation, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _valid(serializer_class: type, request: Request, *, partial: bool = False) -> dict:
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
