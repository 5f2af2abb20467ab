"""REST API for the audit trail: who may read it, the filters, cursor pages and audited exports."""

from __future__ import annotations

import csv
import io
import itertools
import json
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit import export
from apps.audit.events import Action
from apps.audit.models import AuditEvent, ToolCall
from apps.audit.services import tool_calls_record
from apps.tokens.services import token_create

EVENTS = reverse("api:audit-event-list", kwargs={"slug": "acme"})
CALLS = reverse("api:audit-tool-call-list", kwargs={"slug": "acme"})


def _call(workspace, *, at: str, member=None, server="github", tool="create_issue", status=200) -> dict:
    return {
        "workspace_id": workspace.pk,
        "member_id": member.pk if member else None,
        "member_repr": member.email if member else "",
        "server_slug": server,
        "tool_name": tool,
        "method": "tools/call",
        "status": status,
        "created_at": datetime.fromisoformat(at).replace(tzinfo=UTC),
    }


@pytest.fixture
def trail(cast):
    """Governance events and tool calls in acme, and some in globex that must never show up."""
    token_create(access=cast.access(cast.carol), member=cast.carol)
    token_create(access=cast.access(cast.bob), member=cast.carol)
    token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave)
    tool_calls_record(
        [
            _call(cast.acme, at="2026-01-10T08:00:00", member=cast.carol),
            _call(cast.acme, at="2026-01-20T08:00:00", member=cast.bob, tool="list_repos"),
            _call(cast.acme, at="2026-01-31T23:00:00", member=cast.carol, server="jira", status=403),
            _call(cast.globex, at="2026-01-20T08:00:00", member=cast.dave),
        ]
    )


def exports(workspace) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(workspace=workspace, action=Action.AUDIT_EXPORTED))


# --- Who may read it -------------------------------------------------------------------


def test_anonymous_callers_get_401(cast, trail, client_for):
    for path in (EVENTS, CALLS, EVENTS + "?format=csv", CALLS + "?format=jsonl"):
        response = client_for().get(path)
        assert response.status_code == 401
        assert response.json() == {"error": "Authentication credentials were not provided."}
    assert exports(cast.acme) == []


def test_an_outsider_gets_404_and_no_export_is_recorded(cast, trail, client_for):
    for path in (EVENTS, CALLS, EVENTS + "?format=csv", CALLS + "?format=jsonl", EVENTS + "?since=junk"):
        response = client_for(cast.dave).get(path)
        assert (response.status_code, response.json()) == (404, {"error": "Not found."}), path
    assert exports(cast.acme) == []


def test_a_member_may_not_read_the_audit_trail(cast, trail, client_for):
    for path in (EVENTS, CALLS + "?format=csv"):
        response = client_for(cast.carol).get(path)
        assert response.status_code == 403
        assert response.json() == {"error": "Your role in this workspace does not allow this (audit.view)."}
    assert exports(cast.acme) == []


def test_an_admin_reads_only_this_workspaces_rows(cast, trail, client_for):
    bob = client_for(cast.bob)
    events = bob.get(EVENTS).json()["results"]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("token.created", "bob@example.com"),
        ("token.created", "carol@example.com"),
    ]
    assert {"seq", "prev_hash", "row_hash", "metadata", "target"} <= set(events[0])
    calls = bob.get(CALLS).json()["results"]
    assert [(c["member"], c["server"], c["tool"], c["status"]) for c in calls] == [
        ("carol@example.com", "jira", "create_issue", 403),
        ("bob@example.com", "github", "list_repos", 200),
        ("carol@example.com", "github", "create_issue", 200),
    ]


# --- Filters ---------------------------------------------------------------------------


def _ids(client, path) -> list[int]:
    response = client.get(path)
    assert response.status_code == 200, response.json()
    return [row["seq"] for row in response.json()["results"]]


def test_event_filters(cast, trail, client_for):
    bob = client_for(cast.bob)
    assert _ids(bob, EVENTS + "?actor=CAROL@example.com") == [1]
    assert _ids(bob, EVENTS + "?action=token.created&actor=bob@example.com") == [2]
    assert _ids(bob, EVENTS + "?action=member.removed") == []
    today = datetime.now(UTC).date()
    assert _ids(bob, f"{EVENTS}?since={today}&until={today}") == [2, 1]
    assert _ids(bob, f"{EVENTS}?until={today - timedelta(days=1)}") == []
    assert _ids(bob, f"{EVENTS}?since={today + timedelta(days=1)}") == []


def test_tool_call_filters(cast, trail, client_for):
    bob = client_for(cast.bob)
    assert _ids(bob, CALLS + "?member=carol@example.com") == [3, 1]
    assert _ids(bob, CALLS + "?server=jira") == [3]
    assert _ids(bob, CALLS + "?tool=list_repos") == [2]
    assert _ids(bob, CALLS + "?status=403") == [3]
    assert _ids(bob, CALLS + "?since=2026-01-15") == [3, 2]
    # A date covers the whole day; a date-time is exact.
    assert _ids(bob, CALLS + "?until=2026-01-31") == [3, 2, 1]
    assert _ids(bob, CALLS + "?until=2026-01-31T12:00:00Z") == [2, 1]
    assert _ids(bob, CALLS + "?since=2026-01-20T09:00:00%2B02:00&until=2026-01-20") == [2]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            EVENTS + "?since=last-week",
            "since: Use an ISO date or date-time, such as 2026-01-31 or 2026-01-31T09:30:00Z (got 'last-week').",
        ),
        (
            CALLS + "?until=2026-02-30",
            "until: Use an ISO date or date-time, such as 2026-01-31 or 2026-01-31T09:30:00Z (got '2026-02-30').",
        ),
        (CALLS + "?status=ok", "status: Use an HTTP status code such as 200 or 403."),
        (CALLS + "?format=xml", "format: Export format 'xml' is unknown; use csv or jsonl."),
        (EVENTS + "?format=json", "format: Export format 'json' is unknown; use csv or jsonl."),
        (EVENTS + "?actor=bob", "actor: Enter a valid email address."),
        (EVENTS + "?since=2026-02-01&until=2026-01-01", "until: until must not be before since."),
    ],
)
def test_bad_filters_say_what_to_fix(cast, trail, client_for, path, error):
    response = client_for(cast.bob).get(path)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == error
    assert exports(cast.acme) == []


def test_an_unknown_action_lists_the_known_ones(cast, client_for):
    response = client_for(cast.bob).get(EVENTS + "?action=token.stolen")
    assert response.status_code == 400
    assert response.json()["error"].startswith("action: Unknown action 'token.stolen'; use one of: workspace.created")


# --- Pages -----------------------------------------------------------------------------


def test_cursor_pages_walk_every_row_newest_first(cast, client_for):
    tool_calls_record(
        [_call(cast.acme, at=f"2026-01-01T00:{minute:02d}:00", tool=f"t{minute}") for minute in range(55)]
        # Same instant twice: the id breaks the tie, so no row is skipped or repeated.
        + [_call(cast.acme, at="2026-01-01T00:30:00", tool="twin")]
    )
    bob = client_for(cast.bob)
    first = bob.get(CALLS).json()
    assert len(first["results"]) == 50
    assert first["previous"] is None
    second = bob.get(first["next"]).json()
    assert second["next"] is None
    seqs = [row["seq"] for row in first["results"] + second["results"]]
    assert sorted(seqs) == list(range(1, 57))
    times = [row["created_at"] for row in first["results"] + second["results"]]
    assert times == sorted(times, reverse=True)


def test_pages_do_not_grow_queries_with_rows(cast, client_for):
    bob = client_for(cast.bob)
    tool_calls_record([_call(cast.acme, at="2026-01-01T00:00:00")])
    with CaptureQueriesContext(connection) as few:
        bob.get(CALLS)
    tool_calls_record([_call(cast.acme, at="2026-01-02T00:00:00") for _ in range(30)])
    with CaptureQueriesContext(connection) as many:
        assert len(bob.get(CALLS).json()["results"]) == 31
    assert len(many) == len(few)


# --- Export ----------------------------------------------------------------------------


def test_csv_export_streams_the_filtered_rows_and_is_audited(cast, trail, client_for):
    response = client_for(cast.bob).get(CALLS + "?format=csv&member=carol@example.com&since=2026-01-01")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="mcpnest-acme-tool-calls-') and disposition.endswith('.csv"')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == export.COLUMNS[ToolCall]
    seq, member = rows[0].index("seq"), rows[0].index("member_repr")
    assert [(row[seq], row[member]) for row in rows[1:]] == [("1", "carol@example.com"), ("3", "carol@example.com")]

    (event,) = exports(cast.acme)
    assert event.actor == cast.bob
    assert event.metadata == {
        "kind": "tool-calls",
        "format": "csv",
        "filters": {"member": "carol@example.com", "since": "2026-01-01"},
        "via": "api",
    }


def test_jsonl_export_is_the_verifiable_chain_in_order(cast, trail, client_for):
    response = client_for(cast.alice).get(EVENTS + "?format=jsonl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].endswith('.jsonl"')
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    # The export event is written before streaming starts, so it is the last row.
    assert [row["action"] for row in rows] == ["token.created", "token.created", "audit.exported"]
    assert {row["workspace"] for row in rows} == {cast.acme.pk}
    assert rows[0]["prev_hash"] == "0" * 64
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["row_hash"]
    (event,) = exports(cast.acme)
    assert (event.actor, event.metadata) == (
        cast.alice,
        {"kind": "events", "format": "jsonl", "filters": {}, "via": "api"},
    )


def test_the_export_streams_under_asgi_without_buffering_it_all(cast, trail, client_for):
    response = client_for(cast.bob).get(CALLS + "?format=jsonl")

    async def read() -> list[bytes]:
        return [part async for part in response]

    # Django warns (and reads everything into a list) when it has to consume a sync
    # iterator under ASGI; the export response must not take that path.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = async_to_sync(read)()
    assert [json.loads(part)["seq"] for part in parts] == [1, 2, 3]
