"""Admin: the indexed catalogue, read-only but for curation (hiding a server, verifying a
publisher, collections and starter packs, the server of the week), the installs counted,
and the indexing runs with what each skipped and why."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.errors import RuleViolation
from apps.marketplace.models import (
    Collection,
    CollectionItem,
    FeaturedServer,
    IndexRun,
    Install,
    Publisher,
    Repository,
    Server,
    ServerVersion,
    Submission,
)
from apps.marketplace.services.curation import publisher_unverify, publisher_verify
from apps.marketplace.services.publishing import submission_approve, submission_reject


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
        "license",
        "topics",
        "score",
        "grade",
        "score_reasons",
        "installs_week",
        "trending",
    ]
    fields = [*readonly_fields, "hidden"]
    inlines = [VersionInline]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Publisher)
class PublisherAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Publishers come from indexing; staff only verify or unverify them, through the
    services (audited), never by editing the field."""

    list_display = ["namespace", "verification", "verified_at", "verified_by", "created_at"]
    list_filter = ["verification"]
    list_select_related = ["verified_by"]
    search_fields = ["namespace"]
    fields = ["namespace", "verification", "verified_at", "verified_by", "created_at"]
    readonly_fields = fields
    actions = ["verify", "unverify"]

    def has_verify_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("marketplace.change_publisher")

    @admin.action(description="Verify the selected publishers (staff)", permissions=("verify",))
    def verify(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = [str(p) for p in queryset.order_by("pk") if publisher_verify(publisher=p, actor=request.user)]
        self.message_user(request, f"Verified: {', '.join(done)}." if done else "Already verified.", messages.INFO)

    @admin.action(description="Withdraw the verification of the selected publishers", permissions=("verify",))
    def unverify(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = [str(p) for p in queryset.order_by("pk") if publisher_unverify(publisher=p, actor=request.user)]
        self.message_user(request, f"Unverified: {', '.join(done)}." if done else "None was verified.", messages.INFO)


class CollectionItemInline(admin.TabularInline):
    model = CollectionItem
    autocomplete_fields = ["server"]
    fields = ["server", "position", "note"]
    extra = 1


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "published", "position", "servers_count", "updated_at"]
    list_filter = ["kind", "published"]
    list_editable = ["published", "position"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ["title"]}
    fields = ["title", "slug", "kind", "description", "position", "published"]
    inlines = [CollectionItemInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(servers_count=Count("items"))

    @admin.display(description="servers", ordering="servers_count")
    def servers_count(self, obj: Collection) -> int:
        return obj.servers_count


@admin.register(FeaturedServer)
class FeaturedServerAdmin(admin.ModelAdmin):
    """Scheduled ahead: one server a week (``week`` is its Monday, checked by the model)."""

    list_display = ["week", "server"]
    list_select_related = ["server"]
    autocomplete_fields = ["server"]
    date_hierarchy = "week"
    fields = ["week", "server", "blurb"]


@admin.register(Install)
class InstallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["server", "via", "day", "created_at"]
    list_filter = ["via", "day"]
    list_select_related = ["server"]
    search_fields = ["server__name"]
    # Many rows: no full COUNT(*) for the "n results" line.
    show_full_result_count = False
    fields = ["server", "via", "visitor", "day", "created_at"]
    readonly_fields = fields


@admin.register(Repository)
class RepositoryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What GitHub last said of each repository, and when it is asked again."""

    list_display = ["key", "status", "stars", "archived", "license", "last_commit_at", "fetched_at", "next_fetch_at"]
    list_filter = ["status", "archived"]
    search_fields = ["key"]
    fields = [
        "key",
        "status",
        "stars",
        "last_commit_at",
        "archived",
        "license",
        "topics",
        "fetched_at",
        "next_fetch_at",
        "error",
        "readme",
    ]
    readonly_fields = fields


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


# --- Publishing: the review queue of submitted server.json documents ------------------------


class SubmissionStatusFilter(admin.SimpleListFilter):
    """The queue opens on what waits for review; "All" shows the decided ones too."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*Submission.Status.choices, ("all", "All")]

    def choices(self, changelist):
        value = self.value() or Submission.Status.PENDING
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or Submission.Status.PENDING
        return queryset if value == "all" else queryset.filter(status=value)


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    """Approve lists the server (``submission_approve``); Reject uses the review note
    written on the submission's page first (``submission_reject``). Only the note of a
    pending submission can be edited; nothing can be added or deleted here."""

    list_display = ["name", "version", "submitted_by", "status", "created_at"]
    list_filter = [SubmissionStatusFilter]
    list_select_related = ["submitted_by"]
    search_fields = ["name"]
    fields = [
        "name",
        "version",
        "status",
        "submitted_by",
        "created_at",
        "reviewed_by",
        "reviewed_at",
        "server",
        "document_pretty",
        "review_note",
    ]
    readonly_fields = [field for field in fields if field != "review_note"]
    actions = ["approve", "reject"]

    @admin.display(description="server.json")
    def document_pretty(self, obj: Submission) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.document, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # A decided submission is history: its note stays as the submitter saw it.
        if obj is not None and obj.status != Submission.Status.PENDING:
            return self.fields
        return self.readonly_fields

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("marketplace.change_submission")

    def save_model(self, request, obj, form, change) -> None:
        # Only the draft note of a pending submission is editable; the decision itself goes
        # through the actions (and their services).
        if obj.status == Submission.Status.PENDING:
            obj.save(update_fields=["review_note"])

    def _review(self, request: HttpRequest, queryset: QuerySet, decide, verb: str) -> None:
        done, refused = [], []
        for submission in queryset.order_by("pk"):
            try:
                decide(submission)
            except RuleViolation as exc:
                refused.append(f"{submission}: {exc}")
            else:
                done.append(f"{submission.name} {submission.version}")
        if done:
            self.message_user(request, f"{verb}: {', '.join(done)}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)

    @admin.action(description="Approve and list", permissions=("review",))
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(request, queryset, lambda s: submission_approve(submission=s, actor=request.user), "Listed")

    @admin.action(description="Reject (with the review note written on each)", permissions=("review",))
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._review(
            request,
            queryset,
            lambda s: submission_reject(submission=s, actor=request.user, note=s.review_note),
            "Rejected",
        )
