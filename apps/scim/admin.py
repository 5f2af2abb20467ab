"""SCIM in the admin: issue and revoke a workspace's SCIM tokens, map its IdP's groups to
roles, and see whom its IdP provisioned.

Writes go through ``apps.scim.services`` with the acting staff user's access to the
workspace (the RBAC gate: Owners, and superusers acting as Owners), and are audited there.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdminMixin, ServiceAdminMixin
from apps.core.http import client_ip
from apps.rbac.access import access_for
from apps.rbac.admin import act_in_workspaces
from apps.rbac.roles import Capability
from apps.scim.models import ScimGroup, ScimIdentity, ScimToken
from apps.scim.services import scim_group_set_role, scim_token_create, scim_token_revoke


@admin.register(ScimToken)
class ScimTokenAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Add one to issue it (the raw token is shown once, in the confirmation message, and
    never again); revoke with the action. Never edited or deleted: revoked rows keep the
    audit trail's references explainable. The digest appears on no page."""

    list_display = ("prefix", "name", "workspace", "status", "created_by", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("workspace", "created_by")
    list_filter = (("workspace", admin.RelatedFieldListFilter),)
    search_fields = ("^prefix", "name", "workspace__slug")
    autocomplete_fields = ("workspace",)
    exclude = ("digest",)
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        if obj is None:
            return ("workspace", "name")
        return ("workspace", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    @admin.display(description="status")
    def status(self, obj: ScimToken) -> str:
        return "active" if obj.is_active else "revoked"

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scim.add_scimtoken")

    def save_model(self, request: HttpRequest, obj: ScimToken, form, change: bool) -> None:
        access = access_for(user=request.user, workspace=obj.workspace)
        issued = scim_token_create(access=access, name=obj.name, ip=client_ip(request))
        obj.pk, obj.prefix, obj.created_at = issued.token.pk, issued.token.prefix, issued.token.created_at
        self.message_user(
            request,
            f"SCIM token for {obj.workspace.slug}: {issued.raw} — copy it into your IdP now; it is not shown again. "
            f"SCIM base URL: {request.build_absolute_uri('/scim/v2/')}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected SCIM tokens", permissions=("revoke",))
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        act_in_workspaces(
            self,
            request,
            queryset.select_related("workspace").order_by("pk"),
            capability=Capability.MANAGE_PRIVILEGED,
            workspace=lambda token: token.workspace,
            act=lambda access, token, ip: scim_token_revoke(access=access, token=token, ip=ip),
            done="Revoked",
        )


class MembersInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ScimGroup.members.through
    verbose_name = "member"
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user")


@admin.register(ScimGroup)
class ScimGroupAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Groups come and go with the IdP; here only their role mapping changes.

    With a role, the group's members get it in the workspace (the highest mapped group
    wins; out of every mapped group they fall back to Member; the last Owner is never
    demoted). Saving applies the mapping to every member at once.
    """

    list_display = ("display_name", "workspace", "role", "external_id", "updated_at")
    list_select_related = ("workspace",)
    list_filter = ("role", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("display_name", "external_id", "workspace__slug")
    fields = ("workspace", "display_name", "external_id", "scim_id", "role", "created_at", "updated_at")
    readonly_fields = ("workspace", "display_name", "external_id", "scim_id", "created_at", "updated_at")
    inlines = (MembersInline,)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ScimGroup, form, change: bool) -> None:
        if "role" in form.changed_data:
            access = access_for(user=request.user, workspace=obj.workspace)
            scim_group_set_role(access=access, group=obj, role=obj.role or None, ip=client_ip(request))


@admin.register(ScimIdentity)
class ScimIdentityAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Whom each workspace's IdP provisioned, and whether it created their account (then
    the IdP may rename and switch off that account, as long as it is in no other workspace)."""

    list_display = ("user", "workspace", "external_id", "created_account", "created_at", "updated_at")
    list_select_related = ("user", "workspace")
    list_filter = ("created_account", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("user__email", "external_id", "workspace__slug")
