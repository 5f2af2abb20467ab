"""Upstream servers, allowlists and tool pins in the admin.

Upstream credentials are never shown: the admin lists only the names of the headers a
server sends. Writes go through the gateway services (approve, disable, re-approve a
tool; a server's URL, timeout and concurrency limit), so they are permission-checked and
audited like everywhere else. Approving and checking are queued as tasks, as in the
portal: the changelist and the change page show how the last one asked for went.
"""

from __future__ import annotations

import datetime
import json

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdminMixin, ServiceAdminMixin
from apps.core.http import client_ip
from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
from apps.gateway.services import (
    pin_approve,
    server_approve,
    server_check_request,
    server_set_enabled,
    server_update,
)
from apps.rbac.access import access_for
from apps.rbac.admin import act_in_workspaces
from apps.rbac.roles import Capability


def _when(moment: datetime.datetime | None) -> str:
    return formats.date_format(timezone.localtime(moment), "Y-m-d H:i:s") if moment else "?"


@admin.register(UpstreamServer)
class UpstreamServerAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Servers are added in the portal or with ``manage.py addserver``; here an operator
    changes a server's URL, timeout and concurrency limit (``server_update``)."""

    list_display = (
        "slug",
        "workspace",
        "url",
        "prefix",
        "status",
        "enabled",
        "health_ok",
        "health_checked_at",
        "last_check",
    )
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
        "last_check",
        "check_requested_by",
        "check_requested_at",
        "check_started_at",
        "check_finished_at",
        "check_error",
    )
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # Everything else is read-only here; these three change through server_update.
    readonly_fields = tuple(name for name in fields if name not in ("url", "timeout_seconds", "max_concurrency"))
    actions = ("approve", "check_now", "disable", "enable")

    @admin.display(description="upstream headers (values hidden)")
    def upstream_header_names(self, obj: UpstreamServer) -> str:
        return ", ".join(obj.header_names) or "—"

    @admin.display(description="last check asked for")
    def last_check(self, obj: UpstreamServer) -> str:
        """The approval or check a person last asked for: under way since when, or how it ended."""
        if not obj.check_state:
            return "—"
        what = obj.get_check_kind_display()
        if obj.checking:
            if obj.check_state == UpstreamServer.CheckState.RUNNING:
                return f"{what} running since {_when(obj.check_started_at)}"
            return f"{what} queued since {_when(obj.check_requested_at)}"
        if obj.check_state == UpstreamServer.CheckState.DONE:
            return f"{what} done {_when(obj.check_finished_at)}"
        if obj.check_state == UpstreamServer.CheckState.FAILED:
            return f"{what} failed {_when(obj.check_finished_at)}: {obj.check_error}"
        return f"{what} not finished, given up (asked for {_when(obj.check_requested_at)})"

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

    @admin.action(description="Approve (a task then pins their tools)", permissions=("manage",))
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Queued: the upstream is contacted by a task, never inside this request.
        self._act(
            request,
            queryset,
            lambda access, server, ip: server_approve(access=access, server=server, ip=ip),
            "Approval asked for (see “last check asked for”)",
        )

    @admin.action(description="Check now (as a task)", permissions=("manage",))
    def check_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(
            request,
            queryset,
            lambda access, server, ip: server_check_request(access=access, server=server, ip=ip),
            "Check asked for (see “last check asked for”)",
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
class AllowRuleAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Allowlists are edited in the portal or with ``manage.py allowtools`` (audited there)."""

    list_display = ("workspace", "user", "server_slug", "tool", "created_at")
    list_select_related = ("workspace", "user")
    list_filter = (("workspace", admin.RelatedFieldListFilter),)
    search_fields = ("user__email", "server_slug", "tool")


@admin.register(ToolPin)
class ToolPinAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
