"""Admin: the indexed catalogue, read-only but for curation (hiding a server, verifying a
publisher), and the indexing runs with what each skipped and why."""

from __future__ import annotations

from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin
from apps.marketplace.models import IndexRun, Publisher, Server, ServerVersion


class VersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ServerVersion
    fields = ["version", "status", "is_latest", "published_at", "updated_at"]
    readonly_fields = fields
    extra = 0
    show_change_link = False


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "grade", "score", "stars", "status", "hidden", "remote", "updated_at"]
    list_filter = ["status", "hidden", "remote", "source", "grade", "archived"]
    list_select_related = ["publisher"]
    search_fields = ["name", "title", "description"]
    date_hierarchy = "updated_at"
    # Everything comes from the registry; staff only decide whether it is shown.
    readonly_fields = [
        "name",
        "publisher",
        "source",
        "version",
        "title",
        "description",
        "repository_url",
        "website_url",
        "status",
        "transports",
        "package_types",
        "remote",
        "published_at",
        "updated_at",
        "indexed_at",
        "repository_key",
        "stars",
        "last_commit_at",
        "archived",
        "categories",
        "score",
        "grade",
        "score_reasons",
    ]
    fields = [*readonly_fields, "hidden"]
    inlines = [VersionInline]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Publisher)
class PublisherAdmin(admin.ModelAdmin):
    list_display = ["namespace", "verification", "created_at"]
    list_filter = ["verification"]
    search_fields = ["namespace"]
    readonly_fields = ["namespace", "created_at"]
    fields = ["namespace", "verification", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IndexRun)
class IndexRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["source", "status", "full", "seen", "written", "skipped", "started_at", "finished_at"]
    list_filter = ["status", "full"]
    fields = [
        "source",
        "status",
        "full",
        "updated_since",
        "cursor",
        "pages",
        "seen",
        "written",
        "skipped",
        "problems",
        "error",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields
