"""Gateway tokens in the admin: find them, see their state, revoke them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.core.admin import ReadOnlyAdminMixin
from apps.rbac.admin import act_in_workspaces
from apps.rbac.roles import Capability
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_revoke


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "active":
            return queryset.active()
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(GatewayToken)
class GatewayTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only apart from revocation.

    Tokens are issued only by ``apps.tokens.services.token_create`` (portal, API, CLI): it
    checks the issuer's role, audits the issue and returns the raw token, shown exactly once
    and never stored; an admin form could do none of that. They are revoked, never deleted:
    revocation is audited and broadcast to gateway workers, and the row keeps the token's
    calls in the audit trail explainable.

    The digest is excluded from every page (a digest is as good as the token for anyone
    who can query by it); only the display prefix identifies a token.
    """

    list_display = ("prefix", "name", "workspace", "kind", "user", "status", "created_at", "expires_at", "last_used_at")
    list_select_related = ("workspace", "user")
    list_filter = (StatusFilter, "kind", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("^prefix", "name", "user__email", "workspace__slug")
    exclude = ("digest",)
    fields = (
        "workspace",
        "kind",
        "user",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields
    actions = ("revoke",)

    @admin.display(description="status")
    def status(self, obj: GatewayToken) -> str:
        return obj.status

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # The Django permission opens the action; each token's workspace role decides.
        return request.user.has_perm("tokens.change_gatewaytoken")

    @admin.action(description="Revoke selected tokens", permissions=("revoke",))
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        act_in_workspaces(
            self,
            request,
            queryset.select_related("workspace", "user").order_by("pk"),
            capability=Capability.MANAGE_TOKENS,
            workspace=lambda token: token.workspace,
            act=lambda access, token, ip: token_revoke(access=access, token=token, ip=ip),
            done="Revoked",
        )
