"""Workspaces, memberships and invitations in the admin.

Every write goes through ``apps.workspaces.services`` with the acting staff user as the
actor, so it is checked by the RBAC gate (a superuser who is not a member acts as Owner)
and audited exactly as in the portal.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.core.admin import ReadOnlyAdminMixin, ServiceAdminMixin
from apps.core.http import client_ip
from apps.rbac.access import access_for
from apps.rbac.admin import act_in_workspaces
from apps.rbac.roles import Capability
from apps.workspaces.models import Invitation, Membership, Workspace
from apps.workspaces.services import (
    GatewayPolicy,
    invitation_revoke,
    member_add,
    member_change_role,
    member_remove,
    workspace_delete,
    workspace_set_policy,
    workspace_update,
)


class DeletedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [("active", "Active"), ("deleted", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "active":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


class MembershipInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Who is in the workspace. Read-only: roles change in the membership admin, via services."""

    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user")


@admin.register(Workspace)
class WorkspaceAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ("slug", "name", "plan", "enforcement", "member_count", "is_deleted", "created_at")
    list_filter = (DeletedFilter, "plan", "enforcement")
    search_fields = ("slug", "name")
    ordering = ("slug",)
    fields = (
        "slug",
        "name",
        "plan",
        "enforcement",
        "rate_limit_per_minute",
        "deny_by_default",
        "audit_retention_days",
        "created_at",
        "deleted_at",
    )
    # Only the fields a service can change are editable here (the services audit each change).
    readonly_fields = ("slug", "audit_retention_days", "created_at", "deleted_at")
    inlines = (MembershipInline,)
    actions = ("soft_delete",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Workspace) -> int:
        return obj.member_count

    @admin.display(boolean=True, description="deleted", ordering="deleted_at")
    def is_deleted(self, obj: Workspace) -> bool:
        return obj.is_deleted

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        # Workspaces are created in the portal: workspace_create makes the creator the
        # first Owner, and an operator creating one here would become its Owner.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # A real delete would cascade memberships, invitations and tokens (with no
        # revocation broadcast) and orphan the workspace's audit chains. The "Delete
        # workspace (soft)" action marks it deleted through workspace_delete instead:
        # tokens revoked, invitations withdrawn, audit trail kept and verifiable.
        return False

    def has_soft_delete_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workspaces.delete_workspace")

    def save_model(self, request: HttpRequest, obj: Workspace, form, change: bool) -> None:
        access = access_for(user=request.user, workspace=Workspace.objects.get(pk=obj.pk))
        ip = client_ip(request)
        changed = set(form.changed_data)
        if changed & {"name", "plan"}:
            workspace_update(
                access=access,
                name=obj.name if "name" in changed else None,
                plan=obj.plan if "plan" in changed else None,
                ip=ip,
            )
        policy = GatewayPolicy.pick({name: form.cleaned_data[name] for name in changed})
        if policy.given():
            workspace_set_policy(access=access, policy=policy, ip=ip)

    @admin.action(description="Delete workspace (soft)", permissions=("soft_delete",))
    def soft_delete(self, request: HttpRequest, queryset: QuerySet) -> None:
        act_in_workspaces(
            self,
            request,
            queryset.order_by("pk"),
            capability=Capability.DELETE_WORKSPACE,
            workspace=lambda workspace: workspace,
            act=lambda access, workspace, ip: False if workspace.is_deleted else workspace_delete(access=access, ip=ip),
            done="Deleted (tokens revoked, audit trail kept)",
        )


@admin.register(Membership)
class MembershipAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ("user", "workspace", "role", "created_at")
    list_select_related = ("user", "workspace")
    list_filter = ("role", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("user__email", "workspace__slug")
    autocomplete_fields = ("workspace", "user")
    actions = ("remove",)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return ("workspace", "user", "created_at") if obj else ("created_at",)

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return ("workspace", "user", "role", "created_at") if obj else ("workspace", "user", "role")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Removal must revoke the member's tokens and keep an Owner: use the
        # "Remove selected members" action (member_remove), not a row delete.
        return False

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workspaces.delete_membership")

    def save_model(self, request: HttpRequest, obj: Membership, form, change: bool) -> None:
        ip = client_ip(request)
        if change:
            if "role" in form.changed_data:
                access = access_for(user=request.user, workspace=obj.workspace)
                member_change_role(access=access, membership=obj, role=obj.role, ip=ip)
            return
        # member_add decides whether this staff user's role in the workspace may add this role.
        created = member_add(workspace=obj.workspace, user=obj.user, role=obj.role, actor=request.user, ip=ip)
        obj.pk, obj.created_at = created.pk, created.created_at

    @admin.action(description="Remove selected members (and revoke their tokens)", permissions=("remove",))
    def remove(self, request: HttpRequest, queryset: QuerySet) -> None:
        act_in_workspaces(
            self,
            request,
            queryset.select_related("user", "workspace").order_by("pk"),
            capability=Capability.MANAGE_MEMBERS,
            workspace=lambda membership: membership.workspace,
            act=lambda access, membership, ip: member_remove(access=access, membership=membership, ip=ip),
            done="Removed",
        )


class InvitationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [("pending", "Pending"), ("accepted", "Accepted"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "pending":
            return queryset.pending()
        if value == "accepted":
            return queryset.filter(accepted_at__isnull=False)
        if value == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if value == "expired":
            return queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=timezone.now())
        return queryset


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only apart from revocation. The digest of the link's secret is never shown.

    Invitations are sent from the portal: ``invitation_create`` emails a one-time link whose
    secret exists only in that email, which an admin form could not do. They are revoked,
    never deleted: revocation is audited, and the row explains a later "invalid link".
    """

    list_display = ("email", "workspace", "role", "status", "invited_by", "created_at", "expires_at")
    list_select_related = ("workspace", "invited_by")
    list_filter = (InvitationStatusFilter, "role", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("email", "workspace__slug")
    exclude = ("digest",)
    fields = (
        "workspace",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ("revoke",)

    @admin.display(description="status")
    def status(self, obj: Invitation) -> str:
        return obj.status

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workspaces.change_invitation")

    @admin.action(description="Revoke selected invitations", permissions=("revoke",))
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        act_in_workspaces(
            self,
            request,
            queryset.select_related("workspace").order_by("pk"),
            capability=Capability.MANAGE_MEMBERS,
            workspace=lambda invitation: invitation.workspace,
            act=lambda access, invitation, ip: invitation_revoke(access=access, invitation=invitation, ip=ip),
            done="Revoked",
        )
