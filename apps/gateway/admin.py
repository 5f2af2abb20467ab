"""Upstream servers, allowlists and tool pins in the admin.

Upstream credentials are never shown: the admin lists only the names of the headers a
server sends. Writes go through the gateway services (approve, disable, re-approve a
tool; a server's URL, timeout and concurrency limit), so they are permission-checked and
audited like everywhere else.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from apps.core.admin import ReadOnlyMixin, ServiceAdminMixin, act_in_workspaces
from apps.core.http import client_ip
from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
from apps.gateway.services import pin_approve, server_approve, server_set_enabled, server_update
from apps.rbac.access import access_for
from apps.rbac.roles import Capability


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


@admin.register(UpstreamServer)
class UpstreamServerAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Servers are added in the portal or with ``manage.py addserver``; here an operator
    changes a server's URL, timeout and concurrency limit (``server_update``)."""

    list_display = ("slug", "workspace", "url", "prefix", "status", "enabled", "health_ok", "health_checked_at")
    list_select_related = ("workspace",)
    list_filter = ("status", "enabled", "health_ok", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("slug", "url", "workspace__slug")
    fields = (
        "workspace",
        "slug",
        "url",
        "transport",
        "prefix",
        "position",
        "timeout_seconds",
        "max_concurrency",
        "upstream_header_names",
        "enabled",
        "status",
        "requested_by",
        "approved_by",
        "approved_at",
        "created_at",
        "health_checked_at",
        "health_ok",
        "health_detail",
    )
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # Everything else is read-only here; these three change through server_update.
    readonly_fields = tuple(name for name in fields if name not in ("url", "timeout_seconds", "max_concurrency"))
    actions = ("approve", "disable", "enable")

    @admin.display(description="upstream headers (values hidden)")
    def upstream_header_names(self, obj: UpstreamServer) -> str:
        return ", ".join(obj.header_names) or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UpstreamServer | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: UpstreamServer, form, change: bool) -> None:
        # The same RBAC gate and audit as the portal: a superuser who is not a member acts as Owner.
        server_update(
            access=access_for(user=request.user, workspace=obj.workspace),
            server=obj,
            url=form.cleaned_data["url"],
            timeout_seconds=form.cleaned_data["timeout_seconds"],
            max_concurrency=form.cleaned_data["max_concurrency"],
            ip=client_ip(request),
        )

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gateway.change_upstreamserver")

    def _act(self, request, queryset, act, done):
        act_in_workspaces(
            self,
            request,
            queryset.select_related("workspace").order_by("pk"),
            capability=Capability.MANAGE_SERVERS,
            workspace=lambda server: server.workspace,
            act=act,
            done=done,
        )

    @admin.action(description="Approve (and pin their tools)", permissions=("manage",))
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(
            request,
            queryset,
            lambda access, server, ip: server_approve(access=access, server=server, ip=ip),
            "Approved",
        )

    @admin.action(description="Disable", permissions=("manage",))
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(
            request,
            queryset,
            lambda access, server, ip: server_set_enabled(access=access, server=server, enabled=False, ip=ip),
            "Disabled",
        )

    @admin.action(description="Enable", permissions=("manage",))
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(
            request,
            queryset,
            lambda access, server, ip: server_set_enabled(access=access, server=server, enabled=True, ip=ip),
            "Enabled",
        )


@admin.register(AllowRule)
class AllowRuleAdmin(ReadOnlyAdmin):
    """Allowlists are edited in the portal or with ``manage.py allowtools`` (audited there)."""

    list_display = ("workspace", "user", "server_slug", "tool", "created_at")
    list_select_related = ("workspace", "user")
    list_filter = (("workspace", admin.RelatedFieldListFilter),)
    search_fields = ("user__email", "server_slug", "tool")


@admin.register(ToolPin)
class ToolPinAdmin(ReadOnlyAdmin):
    list_display = ("tool_name", "server", "pending", "approved_at", "approved_by")
    list_select_related = ("server__workspace", "approved_by")
    list_filter = (("server__workspace", admin.RelatedFieldListFilter),)
    search_fields = ("tool_name", "server__slug")
    fields = (
        "server",
        "tool_name",
        "fingerprint",
        "approved_definition",
        "pending_fingerprint",
        "pending",
        "pending_since",
        "approved_by",
        "approved_at",
    )
    readonly_fields = fields
    actions = ("reapprove",)

    @admin.display(boolean=True, description="change pending")
    def pending(self, obj: ToolPin) -> bool:
        return obj.has_pending_change

    @admin.display(description="approved definition")
    def approved_definition(self, obj: ToolPin) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.definition, indent=2, sort_keys=True))

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gateway.change_toolpin")

    @admin.action(description="Approve the pending definition", permissions=("manage",))
    def reapprove(self, request: HttpRequest, queryset: QuerySet) -> None:
        act_in_workspaces(
            self,
            request,
            queryset.filter(pending_fingerprint__gt="").select_related("server__workspace"),
            capability=Capability.MANAGE_ALLOWLISTS,
            workspace=lambda pin: pin.server.workspace,
            act=lambda access, pin, ip: pin_approve(access=access, pin=pin, ip=ip),
            done="Approved",
        )
