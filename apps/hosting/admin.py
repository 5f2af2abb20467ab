"""Admin: the image catalog (superusers edit it: the allowlist is the gate) and instances,
read-only and without their credentials (``env_encrypted`` is never listed)."""

from __future__ import annotations

from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin
from apps.hosting.models import AllowedImage, Instance


@admin.register(AllowedImage)
class AllowedImageAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "image", "default_profile", "egress", "verified"]
    list_filter = ["verified", "egress"]
    search_fields = ["slug", "name", "image"]
    # Editing needs the model's permissions: superusers hold them; grant them to nobody else.


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "workspace", "image", "profile", "status", "healthy", "host_port", "created_at"]
    list_filter = ["status", "healthy", "profile"]
    list_select_related = ["workspace", "image"]
    search_fields = ["workspace__slug", "image__slug"]
    date_hierarchy = "created_at"
    fields = [
        "workspace",
        "image",
        "profile",
        "status",
        "healthy",
        "runtime_id",
        "host_port",
        "upstream_server",
        "env_names",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "stopped_at",
    ]
    readonly_fields = fields

    @admin.display(description="Credentials (names only)")
    def env_names(self, obj: Instance) -> str:
        return ", ".join(obj.env_names) or "—"
