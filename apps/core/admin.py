"""Building blocks shared by the MCPNest admins.

* ``CappedCountPaginator`` and ``RangeDateHierarchyChangeList``: changelists over tables
  of millions of rows (the audit trail) without a full ``COUNT(*)`` or ``DISTINCT``;
* ``InputFilter``: a free-text list filter, for columns with too many values to list;
* ``ReadOnlyAdminMixin``: the one way an admin (or inline) refuses add, change and delete;
* ``ServiceAdminMixin``: admin writes go through the services like every other write, and a
  refused rule becomes a message.

Framework helpers only: nothing here imports a domain app (``tests/core/test_layering.py``).
Admin actions that need the RBAC gate use ``apps.rbac.admin.act_in_workspaces``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst

from apps.core.errors import RuleViolation

# --- Changelists over huge tables ------------------------------------------------------


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` matching rows, so no changelist runs a full ``COUNT(*)``.

    ``SELECT COUNT(*) FROM (SELECT … LIMIT cap + 1)`` stops as soon as it has seen enough
    rows. Beyond the cap the changelist says "10,000+" and pages stop there: narrowing the
    filters (a workspace, a date) brings older rows into reach, and the export has no cap.
    Unfiltered on PostgreSQL, the planner's estimate (``pg_class.reltuples``, as
    healthchecks' paginator uses) is shown as the approximate total.
    """

    cap = 10_000
    capped = False  # set by count: more rows match than were counted

    @cached_property
    def count(self) -> int:
        rows = self.object_list.order_by()[: self.cap + 1].count()
        self.capped = rows > self.cap
        return min(rows, self.cap)

    @cached_property
    def estimate(self) -> int | None:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql" or queryset.query.where:
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # reltuples is -1 until the table is first analysed.
        return int(row[0]) if row and row[0] >= 0 else None


class RangeDateHierarchyChangeList(ChangeList):
    """A changelist whose date drill-down costs two index probes instead of a DISTINCT.

    Django's ``date_hierarchy`` lists the years (or months, or days) that hold rows with
    ``SELECT DISTINCT date_trunc(…)`` over every filtered row: a full scan of a large
    table on each page view. Here the choices are every period between the oldest and the
    newest filtered row (two ``ORDER BY … LIMIT 1`` queries); a period inside that range
    may hold no rows, which costs the reader one click, not the database a scan.
    The template ``admin/audit/change_list.html`` renders ``date_hierarchy_nav``.
    """

    @cached_property
    def date_hierarchy_nav(self) -> dict[str, Any]:
        return range_date_hierarchy(self)


def range_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """The context Django's ``admin/date_hierarchy.html`` expects, built from a date range."""
    field = cl.date_hierarchy
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    year, month, day = cl.params.get(year_field), cl.params.get(month_field), cl.params.get(day_field)

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    if year and month and day:
        chosen = datetime.date(int(year), int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    first, last = _date_range(cl, field)
    if first is None or last is None:
        return {"show": True, "back": None, "choices": []}
    first, last = timezone.localtime(first).date(), timezone.localtime(last).date()
    if not year and first.year == last.year:
        year = first.year
        if first.month == last.month:
            month = first.month
    if year and month:
        days = (first + datetime.timedelta(days=n) for n in range((last - first).days + 1))
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: d.day}),
                    "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    if year:
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {
                    "link": link({year_field: year, month_field: m}),
                    "title": capfirst(formats.date_format(datetime.date(int(year), m, 1), "YEAR_MONTH_FORMAT")),
                }
                for m in range(first.month, last.month + 1)
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [{"link": link({year_field: str(y)}), "title": str(y)} for y in range(first.year, last.year + 1)],
    }


def _date_range(cl: ChangeList, field: str) -> tuple[Any, Any]:
    if "__" not in field and (not cl.multi_page or (cl.show_all and cl.can_show_all)):
        # Every matching row is on this page: read the range off it (the page renders
        # from the same, now cached, rows). Probing the index for a rare match would walk
        # it end to end.
        moments = [getattr(row, field) for row in cl.result_list]
        return (min(moments), max(moments)) if moments else (None, None)
    ordered = cl.queryset.order_by(field).values_list(field, flat=True)
    return ordered.first(), ordered.reverse().first()


class InputFilter(admin.SimpleListFilter):
    """A list filter with a text box: for columns with too many distinct values to list."""

    template = "admin/input_filter.html"
    placeholder = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Iterable[tuple[str, str]]:
        return ()

    def has_output(self) -> bool:
        return True

    def text(self) -> str:
        return (self.value() or "").strip()

    def choices(self, changelist: ChangeList) -> Iterable[dict[str, Any]]:
        yield {
            "selected": not self.text(),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            # The text box submits a GET form: the other filters ride along as hidden fields.
            "hidden": [(name, value) for name, value in changelist.params.items() if name != self.parameter_name],
        }


# --- Read-only admins ------------------------------------------------------------------


class ReadOnlyAdminMixin:
    """No add, change or delete through this admin, for anyone, superusers included.

    For rows that change only through services (audited, checked by the RBAC gate) or
    never (the audit trail). Users with the model's view permission still read them; named
    admin actions that call a service (``revoke``, ``reapprove``) stay available, while
    Django's bulk "delete selected" disappears with the delete permission. Mix it in before
    ``admin.ModelAdmin`` or an inline class; ``obj`` is optional because inlines pass it and
    model admins do not.
    """

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# --- Writes through services ---------------------------------------------------------


def error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


class ServiceAdminMixin:
    """For admins whose ``save_model``/``delete_model`` call services.

    The add/change view runs inside a transaction; when a service refuses (a business
    rule, an RBAC capability), everything is rolled back and the refusal is shown as an
    error message on the same page instead of a server error.
    """

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (RuleViolation, ValidationError) as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
