"""The tool calls page: the gateway's call records, filtered, paged without COUNT, and
exported as a stream that is itself audited."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditEvent, ToolCall
from apps.audit.services import tool_calls_record


def _calls_url(query: str = "", slug: str = "acme") -> str:
    return reverse("portal:calls", args=[slug]) + query


def _export_url(query: str, slug: str = "acme") -> str:
    return reverse("portal:calls-export", args=[slug]) + query


@pytest.fixture
def record(cast):
    def make(n: int = 1, *, workspace=None, member=None, **values) -> None:
        workspace = workspace or cast.acme
        member = member or cast.carol
        defaults = {
            "workspace_id": workspace.pk,
            "member_id": member.pk,
            "member_repr": member.email,
            "token_prefix": "mng_1234abcd",
            "server_slug": "fix",
            "tool_name": "echo",
            "method": "tools/call",
            "status": 200,
            "latency_ms": 12,
        }
        tool_calls_record([{**defaults, **values} for _ in range(n)])

    return make


def _rows(client: Client, query: str = "") -> list[ToolCall]:
    response = client.get(_calls_url(query))
    assert response.status_code == 200
    return response.context["page"].rows


def test_calls_newest_first_and_only_this_workspace(cast, signed_in, record):
    record(2, tool_name="echo")
    record(1, tool_name="add", workspace=cast.globex, member=cast.dave)
    record(1, tool_name="fail", status=500, error_code=-32603)
    rows = _rows(signed_in(cast.bob))
    assert [c.tool_name for c in rows] == ["fail", "echo", "echo"]
    assert all(c.workspace_id == cast.acme.pk for c in rows)
    body = signed_in(cast.bob).get(_calls_url()).content.decode()
    assert "dave@example.com" not in body
    assert "<code>fix:fail</code>" in body and "-32603" in body


def test_filters(cast, signed_in, record):
    record(1, tool_name="echo", status=200)
    record(1, tool_name="add", status=403, member=cast.bob, shadow_blocked=False)
    record(1, tool_name="slow", status=404, server_slug="other", shadow_blocked=True)
    record(1, tool_name="fail", status=502)
    alice = signed_in(cast.alice)

    def tools(query: str) -> list[str]:
        return sorted(c.tool_name for c in _rows(alice, query))

    assert tools("?member=BOB@example.com") == ["add"]
    assert tools("?server=other") == ["slow"]
    assert tools("?tool=fail") == ["fail"]
    assert tools("?status=4xx") == ["add", "slow"]
    assert tools("?status=2XX") == ["echo"]
    assert tools("?status=403") == ["add"]
    assert tools("?status=5xx&member=carol@example.com") == ["fail"]
    assert tools("?shadow=on") == ["slow"]


def test_date_range_is_inclusive(cast, signed_in, record):
    now = timezone.now()
    record(1, tool_name="old", created_at=now - timedelta(days=3))
    record(1, tool_name="new")
    alice = signed_in(cast.alice)
    today = now.date()
    assert [c.tool_name for c in _rows(alice, f"?since={today}&until={today}")] == ["new"]
    assert [c.tool_name for c in _rows(alice, f"?until={today - timedelta(days=3)}")] == ["old"]


def test_invalid_filters_show_errors_not_everything(cast, signed_in, record):
    record(2)
    response = signed_in(cast.alice).get(_calls_url("?status=2x&since=2026-02-01&until=2026-01-01"))
    form = response.context["form"]
    assert "status" in form.errors and "“From” must be on or before “To”." in form.non_field_errors()
    assert response.context["page"].rows == []


def test_pages_without_counting(cast, signed_in, record, django_assert_max_num_queries):
    record(120, status=403)
    client = signed_in(cast.alice)
    # The 6th and 7th queries: the navigation's counts of what waits for approval (no COUNT either).
    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(8):  # 8th: "SSO required"
        first = client.get(_calls_url("?status=4xx"))
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    page = first.context["page"]
    assert (len(page.rows), page.has_next, page.has_previous) == (50, True, False)
    assert "page=2" in first.content.decode() and "status=4xx" in first.content.decode()
    third = client.get(_calls_url("?status=4xx&page=3")).context["page"]
    assert (len(third.rows), third.has_next, third.has_previous) == (20, False, True)


def test_csv_export_streams_the_filtered_calls_and_is_recorded(cast, signed_in, record):
    record(3, tool_name="echo", status=200)
    record(2, tool_name="fail", status=500)
    record(1, workspace=cast.globex, member=cast.dave)
    response = signed_in(cast.bob).get(_export_url("?format=csv&status=2xx"))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="mcpnest-acme-tool-calls-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["tool_name"], r["status"]) for r in rows] == [("echo", "200")] * 3
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    assert {r["workspace"] for r in rows} == {str(cast.acme.pk)}
    (exported,) = AuditEvent.objects.filter(workspace=cast.acme, action=Action.AUDIT_EXPORTED)
    assert exported.actor == cast.bob and exported.ip == "127.0.0.1"
    assert exported.metadata == {"format": "csv", "kind": "tool-calls", "filters": {"status": "2xx"}, "via": "portal"}
    assert all(chain.verify_chain(c, m) for c, m in chain.iter_chains(cast.acme.pk))


def test_jsonl_export_carries_the_hashes_of_every_call(cast, signed_in, record):
    record(4)
    response = signed_in(cast.alice).get(_export_url("?format=jsonl"))
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4]
    stored = {c.seq: c.row_hash for c in ToolCall.objects.filter(workspace=cast.acme)}
    assert {line["seq"]: line["row_hash"] for line in lines} == stored
    assert all(line["type"] == "call" for line in lines)


def test_export_refuses_unknown_formats_and_bad_filters(cast, signed_in, record):
    record(1)
    alice = signed_in(cast.alice)
    for query in ("?format=xlsx", "?format=csv&status=bogus"):
        response = alice.get(_export_url(query), follow=True)
        assert response.redirect_chain[-1][0] == _calls_url()
        assert "Choose valid filters and one of: jsonl, csv." in [str(m) for m in response.context["messages"]]
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()


def test_who_may_see_calls(cast, signed_in, record):
    record(1)
    carol, dave = signed_in(cast.carol), signed_in(cast.dave)
    # carol is in acme, so she is told the page is not for her role; dave learns nothing.
    for client, status in ((carol, 403), (dave, 404)):
        assert client.get(_calls_url()).status_code == status
        assert client.get(_export_url("?format=csv")).status_code == status
        assert client.post(_calls_url()).status_code == status
    assert dave.get(_calls_url(slug="no-such-workspace")).status_code == 404
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()
    assert signed_in(cast.alice).post(_calls_url()).status_code == 405
    # The tab shows for those who may look.
    assert _calls_url() in signed_in(cast.bob).get(reverse("portal:workspace", args=["acme"])).content.decode()
    assert _calls_url() not in carol.get(reverse("portal:workspace", args=["acme"])).content.decode()
