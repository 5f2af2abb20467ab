"""The audit page: filters, COUNT-free paging, and exports that stream and are themselves audited."""

from __future__ import annotations

import csv
import io
import json
import warnings
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.audit.services import audit_event_record
from apps.rbac.roles import Role
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory


def _audit_url(query: str = "") -> str:
    return reverse("portal:audit", args=["acme"]) + query


def _export_url(query: str) -> str:
    return reverse("portal:audit-export", args=["acme"]) + query


def _record(cast, n: int, action=Action.MEMBER_ADDED, actor=None, **extra) -> None:
    for i in range(n):
        audit_event_record(workspace=cast.acme, actor=actor or cast.alice, action=action, target_repr=f"t{i}", **extra)


def test_events_newest_first_filtered_by_action_and_actor(cast, signed_in):
    _record(cast, 2, Action.MEMBER_ADDED, cast.alice)
    _record(cast, 3, Action.ROLE_CHANGED, cast.bob)
    audit_event_record(workspace=cast.globex, actor=cast.dave, action=Action.ROLE_CHANGED)
    client = signed_in(cast.bob)
    everything = client.get(_audit_url()).context["page"].rows
    assert len(everything) == 5
    assert [e.seq for e in everything] == sorted((e.seq for e in everything), reverse=True)
    roles = client.get(_audit_url("?action=member.role_changed")).context["page"].rows
    assert {(e.action, e.actor_repr) for e in roles} == {("member.role_changed", "bob@example.com")}
    by_alice = client.get(_audit_url("?actor=ALICE@example.com")).context["page"].rows
    assert len(by_alice) == 2
    assert "dave@example.com" not in client.get(_audit_url()).content.decode()


def test_date_range_is_inclusive(cast, signed_in):
    _record(cast, 1)
    today = timezone.now().date()
    client = signed_in(cast.alice)
    assert len(client.get(_audit_url(f"?since={today}&until={today}")).context["page"].rows) == 1
    tomorrow = today + timedelta(days=1)
    assert client.get(_audit_url(f"?since={tomorrow}")).context["page"].rows == []
    yesterday = today - timedelta(days=1)
    assert client.get(_audit_url(f"?until={yesterday}")).context["page"].rows == []


def test_invalid_filters_show_errors_not_everything(cast, signed_in):
    _record(cast, 2)
    response = signed_in(cast.alice).get(_audit_url("?since=2026-02-01&until=2026-01-01&action=nope"))
    assert response.status_code == 200
    form = response.context["form"]
    assert "action" in form.errors and "“From” must be on or before “To”." in form.non_field_errors()
    assert response.context["page"].rows == []


def test_pages_without_counting(cast, signed_in, django_assert_max_num_queries):
    _record(cast, 120)
    client = signed_in(cast.alice)
    # The 6th and 7th queries: the navigation's counts of what waits for approval (no COUNT either).
    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(8):  # 8th: "SSO required"
        first = client.get(_audit_url("?action=member.added"))
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    page = first.context["page"]
    assert (len(page.rows), page.has_next, page.has_previous) == (50, True, False)
    assert "page=2" in first.content.decode() and "action=member.added" in first.content.decode()
    third = client.get(_audit_url("?action=member.added&page=3")).context["page"]
    assert (len(third.rows), third.has_next, third.has_previous) == (20, False, True)
    assert client.get(_audit_url("?page=bogus")).context["page"].number == 1


def test_csv_export_streams_and_is_recorded(cast, signed_in):
    _record(cast, 3, Action.ROLE_CHANGED)
    _record(cast, 2, Action.MEMBER_ADDED)
    response = signed_in(cast.bob).get(_export_url("?format=csv&action=member.role_changed"))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="mcpnest-acme-events-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["member.role_changed"] * 3
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    exported = AuditEvent.objects.get(workspace=cast.acme, action=Action.AUDIT_EXPORTED)
    assert exported.actor == cast.bob
    assert exported.metadata == {
        "format": "csv",
        "kind": "events",
        "filters": {"action": "member.role_changed"},
        "via": "portal",
    }
    assert exported.ip == "127.0.0.1"
    # The trail stays verifiable after the export wrote to it.
    assert all(chain.verify_chain(c, m) for c, m in chain.iter_chains(cast.acme.pk))


def test_jsonl_export_is_a_snapshot_up_to_the_export(cast, signed_in):
    _record(cast, 4)
    response = signed_in(cast.alice).get(_export_url("?format=jsonl"))
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    export_event = AuditEvent.objects.get(workspace=cast.acme, action=Action.AUDIT_EXPORTED)
    assert [line["seq"] for line in lines] == list(range(1, export_event.seq))
    assert all(line["workspace"] == cast.acme.pk for line in lines)


def test_export_refuses_unknown_formats(cast, signed_in):
    response = signed_in(cast.alice).get(_export_url("?format=xlsx"), follow=True)
    assert "Choose valid filters and one of: jsonl, csv." in [str(m) for m in response.context["messages"]]
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()


def test_member_cannot_export(cast, signed_in):
    assert signed_in(cast.carol).get(_export_url("?format=csv")).status_code == 403
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()


@pytest.fixture
async def close_worker_connections():
    """Async tests reach the database from asgiref's worker thread; close its connections
    afterwards, or PostgreSQL refuses to drop the test database."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_export_streams_without_buffering_under_asgi(close_worker_connections):
    """Under ASGI a synchronous iterator would be read whole before sending; ours is async."""

    def setup():
        workspace = WorkspaceFactory(slug="acme")
        user = UserFactory(email="alice@example.com")
        MembershipFactory(workspace=workspace, user=user, role=Role.OWNER)
        for i in range(30):
            audit_event_record(workspace=workspace, actor=user, action=Action.MEMBER_ADDED, target_repr=f"t{i}")
        return user

    user = await sync_to_async(setup)()
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get(_export_url("?format=jsonl"))
    assert response.status_code == 200
    # Django warns (and reads everything into a list) when it must consume a sync iterator
    # under ASGI; the export must not take that path.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = b"".join([chunk async for chunk in response]).decode()
    assert len(body.splitlines()) == 30
    assert await AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).acount() == 1
