"""The audit trail in the admin: read-only for everyone, filterable, and exportable.

Security reviewers (the "Security reviewers" group, migration 0002) hold only the view
permissions on these models: they can read, filter and export the trail and nothing else.
Nobody — superusers included — can add, change or delete a row here; the ORM refuses too.

Tool calls: the status filter tells answered calls (2xx), tool errors (422: the tool
answered with ``isError: true``), refusals (other 4xx) and failures (5xx) apart; the
"quarantined" filter lists the rows whose values were cleaned or that could not be stored
as received (``apps.audit.sanitize``), and the detail page shows their note in full.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path, reverse
from django.utils.html import format_html

from apps.accounts.models import User
from apps.audit import chain as audit_chain
from apps.audit import export
from apps.audit.export import ExportKind, ExportVia
from apps.audit.models import GENESIS_HASH, AuditChain, AuditCheckpoint, AuditEvent, ChainedRecord, ToolCall
from apps.audit.services import audit_export_begin
from apps.core.admin import CappedCountPaginator, InputFilter, RangeDateHierarchyChangeList, ReadOnlyAdminMixin
from apps.core.http import client_ip
from apps.workspaces.models import Workspace

# --- Filters that never load a million distinct values ------------------------------


class PersonFilter(InputFilter):
    """Rows by a person's email: their user id (indexed) or, for a deleted user, the snapshot."""

    placeholder = "email address"
    field: str  # "member" or "actor": the FK; "<field>_repr" is the email as written then

    def queryset(self, request: HttpRequest, queryset):
        email = self.text().lower()
        if not email:
            return queryset
        ids = list(User.objects.filter(email__iexact=email).values_list("pk", flat=True))
        if ids:
            return queryset.filter(**{f"{self.field}_id__in": ids})
        return queryset.filter(**{f"{self.field}_repr__iexact": email})


class MemberFilter(PersonFilter):
    title = "member"
    parameter_name = "member"
    field = "member"


class ActorFilter(PersonFilter):
    title = "actor"
    parameter_name = "actor"
    field = "actor"


class ServerFilter(InputFilter):
    title = "server"
    parameter_name = "server"
    placeholder = "server slug"

    def queryset(self, request: HttpRequest, queryset):
        return queryset.filter(server_slug=self.text()) if self.text() else queryset


class ToolFilter(InputFilter):
    title = "tool"
    parameter_name = "tool"
    placeholder = "tool name"

    def queryset(self, request: HttpRequest, queryset):
        return queryset.filter(tool_name=self.text()) if self.text() else queryset


TOOL_ERROR = ToolCall.TOOL_ERROR_STATUS


class StatusFilter(admin.SimpleListFilter):
    """Outcome buckets: each is a range (or one value) over the (status, created_at) index.

    422 is a tool error (the call went through and the tool reported ``isError``): neither
    a success nor a refusal, so it has its own bucket and "4xx" leaves it out.
    """

    title = "status"
    parameter_name = "status"
    BUCKETS = {
        "2xx": Q(status__gte=200, status__lt=300),
        "tool_error": Q(status=TOOL_ERROR),
        "4xx": Q(status__gte=400, status__lt=TOOL_ERROR) | Q(status__gt=TOOL_ERROR, status__lt=500),
        "5xx": Q(status__gte=500, status__lt=600),
        "unknown": Q(status=0),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [
            ("2xx", "Succeeded (2xx)"),
            ("tool_error", f"Tool error ({TOOL_ERROR})"),
            ("4xx", f"Refused (4xx but {TOOL_ERROR})"),
            ("5xx", "Failed (5xx)"),
            ("unknown", "Unknown (0)"),
        ]

    def queryset(self, request: HttpRequest, queryset):
        condition = self.BUCKETS.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


def outcome(status: int) -> str:
    """The status with what it means, as the status filter's buckets name it."""
    if status == TOOL_ERROR:
        return f"{status} tool error"
    if 200 <= status < 300:
        return f"{status} succeeded"
    if 400 <= status < 500:
        return f"{status} refused"
    if 500 <= status < 600:
        return f"{status} failed"
    return f"{status} unknown"


class QuarantineFilter(admin.SimpleListFilter):
    """Rows with a quarantine note (cleaned values, or not storable as received)."""

    title = "quarantined"
    parameter_name = "quarantined"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset):
        if self.value() == "yes":
            return queryset.exclude(quarantine="")  # the partial index toolcall_quarantined
        if self.value() == "no":
            return queryset.filter(quarantine="")
        return queryset


# --- Shared read-only behaviour ------------------------------------------------------


class AuditTrailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Viewable with the model's view permission; never added, changed or deleted here."""

    actions = None  # no bulk action at all: the trail offers nothing to act on

    # Django links a read-only foreign key to its admin page without asking whether the user
    # may open it: a security reviewer on an audit row would follow "workspace" or "chain"
    # into a 403. Those show as plain text to users who cannot view the target.
    LINKED_FIELDS = ("workspace", "chain")

    def _unlinked(self, request: HttpRequest) -> set[str]:
        names = set()
        for name in self.LINKED_FIELDS:
            try:
                field = self.model._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            target_admin = self.admin_site._registry.get(field.related_model)
            if target_admin is not None and not target_admin.has_view_permission(request):
                names.add(name)
        return names

    def get_fieldsets(self, request: HttpRequest, obj=None):
        unlinked, seen = self._unlinked(request), set()

        def swap(names):
            out = []
            for name in names:
                if isinstance(name, list | tuple):
                    out.append(swap(name))
                    continue
                name = f"{name}_text" if name in unlinked else name
                if name not in seen:
                    seen.add(name)
                    out.append(name)
            return tuple(out)

        return [
            (title, {**opts, "fields": swap(opts["fields"])}) for title, opts in super().get_fieldsets(request, obj)
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        unlinked = sorted(self._unlinked(request))
        return (*super().get_readonly_fields(request, obj), *(f"{name}_text" for name in unlinked))

    @admin.display(description="workspace")
    def workspace_text(self, obj) -> str:
        return str(obj.workspace) if obj.workspace_id else "-"

    @admin.display(description="chain")
    def chain_text(self, obj) -> str:
        return str(obj.chain)


def _code(value: str) -> str:
    return format_html('<code style="word-break: break-all">{}</code>', value)


class ChainedRecordAdmin(AuditTrailAdmin):
    """Changelist, detail and export shared by audit events and tool calls."""

    change_list_template = "admin/audit/change_list.html"
    date_hierarchy = "created_at"
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ("workspace",)
    # Only the indexed order: sorting a large table by another column means a full sort.
    sortable_by = ("created_at",)
    chain_fields = ("chain", "seq", "key_id", "prev_hash_display", "row_hash_display", "integrity")

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:
        return RangeDateHierarchyChangeList

    # -- detail page

    @admin.display(description="previous hash")
    def prev_hash_display(self, obj: ChainedRecord) -> str:
        return _code(obj.prev_hash)

    @admin.display(description="row hash")
    def row_hash_display(self, obj: ChainedRecord) -> str:
        return _code(obj.row_hash)

    @admin.display(description="integrity")
    def integrity(self, obj: ChainedRecord) -> str:
        """This row's own checks: its hash matches its contents, and it links to its predecessor.

        (``manage.py audit_verify`` walks whole chains.)
        """
        try:
            contents_ok = audit_chain.row_hash(obj.prev_hash, obj) == obj.row_hash
        except audit_chain.UnknownAuditKey:
            return format_html(
                "<strong>BROKEN</strong>: signed with a key not in MCPNEST_AUDIT_KEYS (key id {}).",
                obj.key_id or "none",
            )
        if obj.seq == 1:
            expected_prev: str | None = GENESIS_HASH
        else:
            model = type(obj)
            expected_prev = (
                model.objects.filter(chain_id=obj.chain_id, seq=obj.seq - 1).values_list("row_hash", flat=True).first()
            )
            if expected_prev is None:  # the predecessor went with retention: its checkpoint holds its hash
                expected_prev = (
                    AuditCheckpoint.objects.filter(chain_id=obj.chain_id, seq=obj.seq - 1)
                    .values_list("row_hash", flat=True)
                    .first()
                )
        if expected_prev is None:
            link = "the previous row is missing"
        elif expected_prev == obj.prev_hash:
            link = "links to the previous row"
        else:
            link = "does NOT link to the previous row"
        contents = "contents match the row hash" if contents_ok else "contents do NOT match the row hash"
        ok = contents_ok and expected_prev == obj.prev_hash
        return format_html("<strong>{}</strong>: {}; {}.", "OK" if ok else "BROKEN", contents, link)

    @staticmethod
    def _account(user_id: int | None) -> str:
        # The row keeps who it was as written then; this says what became of the account.
        if user_id is None:
            return "-"
        email = User.objects.filter(pk=user_id).values_list("email", flat=True).first()
        return f"user #{user_id}, now {email}" if email else f"user #{user_id}, since deleted"

    @admin.display(description="account")
    def member_account(self, obj: ToolCall) -> str:
        return self._account(obj.member_id)

    @admin.display(description="account")
    def actor_account(self, obj: AuditEvent) -> str:
        return self._account(obj.actor_id)

    @admin.display(description="metadata")
    def metadata_display(self, obj: AuditEvent) -> str:
        return format_html(
            '<pre style="margin: 0; white-space: pre-wrap">{}</pre>',
            json.dumps(obj.metadata, indent=2, sort_keys=True, ensure_ascii=False),
        )

    # -- export

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        return [
            path("export/<str:fmt>/", self.admin_site.admin_view(self.export_view), name=name),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        query = request.GET.copy()
        for name in (PAGE_VAR, ERROR_FLAG):
            query.pop(name, None)
        suffix = f"?{query.urlencode()}" if query else ""
        url_name = f"admin:{self.opts.app_label}_{self.opts.model_name}_export"
        export_links = [
            (f"Export {label}", reverse(url_name, args=[fmt]) + suffix)
            for fmt, label in (("csv", "CSV"), ("jsonl", "JSON Lines"))
        ]
        return super().changelist_view(request, {**(extra_context or {}), "export_links": export_links})

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponse:
        """Stream the changelist's filtered rows, with their hashes; the export is itself audited."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in export.FORMATS:
            raise Http404("Unknown export format.")
        try:
            cl = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Those filters are not valid; go back to the list and choose again.")
        # Chain order, so consecutive rows of one chain link up for offline verification.
        queryset = cl.queryset.select_related(None).order_by("chain_id", "seq")
        workspace = self._single_workspace(request)
        audit_export_begin(
            workspace=workspace,
            actor=request.user,
            kind=ExportKind.of(self.model),
            fmt=fmt,
            # The changelist's query as given (a pasted secret is masked by the service).
            filters={key: values[0] if len(values) == 1 else values for key, values in request.GET.lists()},
            via=ExportVia.ADMIN,
            ip=client_ip(request),
        )
        return export.ExportResponse(queryset, fmt, label=workspace.slug if workspace else "all")

    @staticmethod
    def _single_workspace(request: HttpRequest) -> Workspace | None:
        """The workspace the rows are filtered to, if one: the export event joins its trail."""
        value = request.GET.get("workspace__id__exact", "")
        return Workspace.objects.filter(pk=int(value)).first() if value.isdigit() else None


@admin.register(ToolCall)
class ToolCallAdmin(ChainedRecordAdmin):
    list_display = (
        "created_at",
        "workspace",
        "member_repr",
        "server_slug",
        "tool_name",
        "method",
        "outcome",
        "latency_ms",
        "shadow_blocked",
        "quarantined",
    )
    list_filter = (
        ("workspace", admin.RelatedFieldListFilter),  # lists the (few) Workspace rows
        MemberFilter,
        ServerFilter,
        ToolFilter,
        StatusFilter,
        "shadow_blocked",
        QuarantineFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    # Searched exactly, case and all (see get_search_results); member, server and tool have
    # their own filters, which use the indexes.
    search_fields = ("request_id", "session_id", "token_prefix", "client_ip")
    search_help_text = "An exact JSON-RPC request id, MCP session id, token prefix or client IP."
    readonly_fields = ("member_account", "outcome", "quarantine_display", *ChainedRecordAdmin.chain_fields)
    fieldsets = (
        (
            "Call",
            {
                "fields": (
                    "created_at",
                    "workspace",
                    ("member_repr", "member_account"),
                    ("token_prefix", "oauth_client"),
                    ("server_slug", "tool_name"),
                    "method",
                    ("outcome", "error_code"),
                    "latency_ms",
                    "shadow_blocked",
                )
            },
        ),
        ("Client", {"fields": ("client_ip", ("client_name", "client_version"), "session_id", "request_id")}),
        ("Quarantine", {"fields": ("quarantine_display",)}),
        ("Hash chain", {"fields": ("record_id", *ChainedRecordAdmin.chain_fields)}),
    )

    @admin.display(description="status", ordering="status")
    def outcome(self, obj: ToolCall) -> str:
        return outcome(obj.status)

    @admin.display(description="quarantined", boolean=True)
    def quarantined(self, obj: ToolCall) -> bool:
        return bool(obj.quarantine)

    @admin.display(description="quarantine note")
    def quarantine_display(self, obj: ToolCall) -> str:
        if not obj.quarantine:
            return "None: stored exactly as received."
        style = "margin: 0; white-space: pre-wrap; word-break: break-all"
        return format_html('<pre style="{}">{}</pre>', style, obj.quarantine)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Django's search would split the term into words and compare UPPER(column) with
        # "contains" — a full scan whose row estimate is a guess, so PostgreSQL walks the
        # time index hoping for early matches and visits every row (seconds on a million).
        # Plain equality lets the planner use each column's statistics: measured in
        # bench/admin_audit.py.
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q()
        for name in self.search_fields:
            condition |= Q(**{name: term})
        return queryset.filter(condition), False


@admin.register(AuditEvent)
class AuditEventAdmin(ChainedRecordAdmin):
    list_display = ("created_at", "workspace", "actor_repr", "action", "target", "ip")
    list_filter = (
        ("workspace", admin.RelatedFieldListFilter),
        ActorFilter,
        "action",  # fixed choices: the Action enumeration
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("actor_repr", "target_repr", "=target_id", "=ip")
    search_help_text = "Actor or target (contains); target id or IP address (exact)."
    readonly_fields = ("actor_account", "metadata_display", *ChainedRecordAdmin.chain_fields)
    fieldsets = (
        (
            "Event",
            {
                "fields": (
                    "created_at",
                    "workspace",
                    ("actor_repr", "actor_account"),
                    "action",
                    ("target_type", "target_id", "target_repr"),
                    "metadata_display",
                    "ip",
                )
            },
        ),
        ("Hash chain", {"fields": ChainedRecordAdmin.chain_fields}),
    )

    @admin.display(description="target")
    def target(self, obj: AuditEvent) -> str:
        return f"{obj.target_type}: {obj.target_repr}" if obj.target_type else obj.target_repr


@admin.register(AuditChain)
class AuditChainAdmin(AuditTrailAdmin):
    list_display = ("__str__", "workspace", "stream", "last_seq", "last_hash")
    list_select_related = ("workspace",)
    list_filter = ("stream", ("workspace", admin.RelatedFieldListFilter))
    search_fields = ("workspace__slug",)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(AuditTrailAdmin):
    """Where retention cut a chain: verification starts from the newest checkpoint."""

    list_display = ("created_at", "chain", "seq", "deleted_rows", "row_hash", "signature")
    list_select_related = ("chain",)
    list_filter = ("chain__stream",)
    search_fields = ("chain__workspace__slug",)

    @admin.display(description="signature")
    def signature(self, obj: AuditCheckpoint) -> str:
        problem = audit_chain.checkpoint_problem(obj)
        return f"BROKEN: {problem}" if problem else f"OK (key {obj.key_id})"
