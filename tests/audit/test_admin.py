"""The audit trail in the admin: read-only for all, cheap to list, exportable, and audited when exported.

Cast additions: ``root`` is a platform operator (superuser); ``rita`` is a security reviewer
(staff, in the "Security reviewers" group, nothing else).
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditChain, AuditCheckpoint, AuditEvent, ToolCall
from apps.audit.services import audit_event_record, retention_apply, tool_calls_record
from apps.core.admin import CappedCountPaginator
from tests.factories import UserFactory

AUDIT_MODELS = [ToolCall, AuditEvent, AuditChain, AuditCheckpoint]


@pytest.fixture
def root(db):
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def rita(db):
    user = UserFactory(email="rita@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name="Security reviewers"))
    return user


def _call(workspace, member, *, tool="search", server="docs", status=200, **extra):
    return {
        "workspace_id": workspace.pk,
        "member_id": member.pk,
        "member_repr": member.email,
        "method": "tools/call",
        "server_slug": server,
        "tool_name": tool,
        "status": status,
        "token_prefix": "mng_0123abcd",
        "client_ip": "10.0.0.7",
        **extra,
    }


@pytest.fixture
def calls(cast):
    """acme: carol calls docs:search (ok), docs:drop (failed), git:push (refused) twice; globex: dave fails too."""
    tool_calls_record(
        [
            _call(cast.acme, cast.carol),
            _call(cast.acme, cast.carol, tool="drop", status=502),
            _call(cast.acme, cast.carol, tool="drop", status=500),
            _call(cast.acme, cast.bob, server="git", tool="push", status=403, request_id="req-4"),
            _call(cast.acme, cast.bob, server="git", tool="push", status=403, request_id="req-5"),
            _call(cast.globex, cast.dave, tool="drop", status=500),
        ]
    )
    return ToolCall.objects.all()


def _url(model, view="changelist", *args):
    return reverse(f"admin:audit_{model._meta.model_name}_{view}", args=args)


def _export(client, model, fmt, **filters):
    response = client.get(_url(model, "export", fmt), filters)
    assert response.status_code == 200, response.content
    assert response.streaming
    return response, b"".join(response.streaming_content).decode()


# --- Read-only, for everyone -------------------------------------------------------


@pytest.fixture
def one_of_each(cast, calls):
    audit_event_record(workspace=cast.acme, actor=cast.alice, action=Action.WORKSPACE_UPDATED)
    old = timezone.now() - timedelta(days=400)
    tool_calls_record([_call(cast.globex, cast.dave, created_at=old)])
    retention_apply(workspace=cast.globex)  # leaves a checkpoint
    return {model: model.objects.order_by("pk").first() for model in AUDIT_MODELS}


@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m.__name__)
def test_nobody_adds_changes_or_deletes_audit_rows_in_admin(client, root, one_of_each, model):
    client.force_login(root)
    row = one_of_each[model]
    before = model.objects.filter(pk=row.pk).values().get()

    assert client.get(_url(model, "add")).status_code == 403
    assert client.post(_url(model, "add"), {}).status_code == 403
    assert client.get(_url(model, "delete", row.pk)).status_code == 403
    assert client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403

    page = client.get(_url(model, "change", row.pk))
    assert page.status_code == 200  # the superuser may read it…
    assert b'name="_save"' not in page.content  # …but gets no form to change it
    assert client.post(_url(model, "change", row.pk), {"status": 999, "seq": 1}).status_code == 403

    listing = client.get(_url(model))
    assert listing.status_code == 200
    assert b'name="action"' not in listing.content  # no bulk actions, "delete selected" included
    assert model.objects.filter(pk=row.pk).values().get() == before


# --- Cheap changelists -------------------------------------------------------------


def _listed_tools(response) -> list[str]:
    return sorted(call.tool_name for call in response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["drop", "drop", "drop", "push", "push", "search"]),
        ({"status": "5xx"}, ["drop", "drop", "drop"]),
        ({"status": "4xx", "member": "BOB@example.com"}, ["push", "push"]),
        ({"server": "docs", "tool": "drop", "status": "5xx"}, ["drop", "drop", "drop"]),
        (
            {"created_at__gte": "2000-01-01 00:00:00+00:00", "shadow_blocked__exact": "0"},
            ["drop", "drop", "drop", "push", "push", "search"],
        ),
        ({"q": " req-4 "}, ["push"]),  # ids are searched exactly…
        ({"q": "req"}, []),  # …not as fragments
        ({"q": "mng_0123abcd", "status": "2xx"}, ["search"]),
    ],
)
def test_tool_call_changelist_filters(client, root, cast, calls, django_assert_max_num_queries, filters, expected):
    client.force_login(root)
    with django_assert_max_num_queries(10):
        response = client.get(_url(ToolCall), filters)
    assert response.status_code == 200
    assert _listed_tools(response) == expected


def test_workspace_filter_lists_workspaces_and_narrows_the_rows(client, root, cast, calls):
    client.force_login(root)
    response = client.get(_url(ToolCall), {"workspace__id__exact": cast.globex.pk})
    assert [c.workspace_id for c in response.context["cl"].result_list] == [cast.globex.pk]
    assert f"workspace__id__exact={cast.acme.pk}".encode() in response.content  # a choice per workspace


def test_a_deleted_users_rows_are_found_by_the_email_written_then(client, root, cast):
    tool_calls_record([_call(cast.acme, cast.carol, member_id=987654, member_repr="gone@example.com")])
    client.force_login(root)
    response = client.get(_url(ToolCall), {"member": "gone@example.com"})
    assert [c.member_repr for c in response.context["cl"].result_list] == ["gone@example.com"]


def test_changelists_never_count_or_scan_the_whole_table(client, root, cast, calls):
    audit_event_record(workspace=cast.acme, actor=cast.alice, action=Action.MEMBER_ADDED)
    client.force_login(root)
    for model in (ToolCall, AuditEvent):
        for filters in ({}, {"workspace__id__exact": cast.acme.pk}, {"created_at__year": timezone.now().year}):
            with CaptureQueriesContext(connection) as queries:
                assert client.get(_url(model), filters).status_code == 200
            sql = [q["sql"].upper() for q in queries.captured_queries]
            assert not any("DISTINCT" in s for s in sql), sql
            counts = [s for s in sql if "COUNT(" in s]
            assert counts and all("LIMIT" in s for s in counts), counts


def test_beyond_the_cap_the_list_says_so_and_stops(client, root, cast, calls, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 4)
    monkeypatch.setattr("apps.audit.admin.ToolCallAdmin.list_per_page", 2)
    client.force_login(root)
    response = client.get(_url(ToolCall))
    assert response.context["cl"].result_count == 4
    assert "4+ tool calls" in response.content.decode()
    assert client.get(_url(ToolCall), {"p": 3}).status_code == 302  # page 3 is past the cap: Django's ?e=1
    narrowed = client.get(_url(ToolCall), {"status": "4xx"})
    assert narrowed.context["cl"].result_count == 2 and "2 tool calls" in narrowed.content.decode()


def test_unfiltered_on_postgresql_the_planner_estimate_gives_the_total(
    client, root, calls, require_postgres, monkeypatch
):
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(ToolCall._meta.db_table)}")
    client.force_login(root)
    assert "2+ tool calls (about 6 in all)" in client.get(_url(ToolCall)).content.decode()
    filtered = client.get(_url(ToolCall), {"status": "5xx"}).content.decode()
    assert "2+ tool calls" in filtered and "in all" not in filtered  # the estimate is of the whole table


def test_date_drill_down_spans_the_filtered_range(client, root, cast):
    tool_calls_record(
        [
            _call(cast.acme, cast.carol, created_at=datetime(2025, 1, 30, 12, tzinfo=UTC)),
            _call(cast.acme, cast.carol, created_at=datetime(2025, 3, 2, 12, tzinfo=UTC)),
        ]
    )
    client.force_login(root)
    top = client.get(_url(ToolCall))  # one year of data: Django's rule drills straight into it
    titles = [c["title"] for c in top.context["cl"].date_hierarchy_nav["choices"]]
    assert titles == ["January 2025", "February 2025", "March 2025"]
    month = client.get(_url(ToolCall), {"created_at__year": 2025, "created_at__month": 1})
    nav = month.context["cl"].date_hierarchy_nav
    assert [c["title"] for c in nav["choices"]] == ["January 30"]
    assert "created_at__day=30" in nav["choices"][0]["link"]
    assert _listed_tools(month) == ["search"]


def test_detail_page_shows_the_chain_and_pretty_metadata(client, root, cast):
    audit_event_record(
        workspace=cast.acme,
        actor=cast.alice,
        action=Action.ROLE_CHANGED,
        metadata={"before": "member", "after": "admin"},
    )
    event = AuditEvent.objects.get(action=Action.ROLE_CHANGED)
    client.force_login(root)
    html = client.get(_url(AuditEvent, "change", event.pk)).content.decode()
    assert event.row_hash in html and event.prev_hash in html
    assert '"after": "admin",\n  "before": "member"' in html.replace("&quot;", '"')
    assert "<strong>OK</strong>" in html

    with connection.cursor() as cursor:
        table = connection.ops.quote_name(AuditEvent._meta.db_table)
        cursor.execute(f"UPDATE {table} SET actor_repr = 'mallory@example.com' WHERE id = %s", [event.pk])
    html = client.get(_url(AuditEvent, "change", event.pk)).content.decode()
    assert "<strong>BROKEN</strong>" in html and "do NOT match" in html


# --- Export ------------------------------------------------------------------------


def test_csv_export_streams_exactly_the_filtered_rows_and_is_audited(client, root, cast, calls):
    client.force_login(root)
    filters = {"workspace__id__exact": str(cast.acme.pk), "status": "5xx"}
    response, body = _export(client, ToolCall, "csv", **filters)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"] and "acme" in response["Content-Disposition"]

    rows = list(csv.DictReader(io.StringIO(body)))
    expected = ToolCall.objects.filter(workspace=cast.acme, status__gte=500).order_by("chain_id", "seq")
    assert [int(r["id"]) for r in rows] == [c.pk for c in expected]
    assert [(r["prev_hash"], r["row_hash"]) for r in rows] == [(c.prev_hash, c.row_hash) for c in expected]

    event = AuditEvent.objects.get(action=Action.AUDIT_EXPORTED)
    assert (event.actor_id, event.workspace_id, event.target_type) == (root.pk, cast.acme.pk, "workspace")
    assert event.metadata == {"kind": "tool-calls", "format": "csv", "filters": filters, "via": "admin"}
    assert isinstance(
        chain.verify_chain(AuditChain.objects.get(workspace=cast.acme, stream="events"), AuditEvent), chain.ChainReport
    )


def test_jsonl_export_of_events_keeps_the_hashes(client, rita, cast):
    for action in (Action.MEMBER_ADDED, Action.ROLE_CHANGED, Action.MEMBER_ADDED):
        audit_event_record(workspace=cast.acme, actor=cast.alice, action=action, target_repr="carol")
    audit_event_record(workspace=cast.globex, actor=cast.dave, action=Action.MEMBER_ADDED)
    client.force_login(rita)
    _, body = _export(client, AuditEvent, "jsonl", action__exact="member.added", actor="alice@example.com")

    lines = [json.loads(line) for line in body.splitlines()]
    expected = AuditEvent.objects.filter(action="member.added", actor=cast.alice).order_by("seq")
    assert [line["id"] for line in lines] == [e.pk for e in expected]
    for line, event in zip(lines, expected, strict=True):
        assert (line["row_hash"], line["seq"]) == (event.row_hash, event.seq)
        # The exported values are exactly what the hash covers: an auditor can recompute it.
        assert chain.row_hash(line["prev_hash"], event) == line["row_hash"]
    exported = AuditEvent.objects.get(action=Action.AUDIT_EXPORTED)
    assert exported.actor_id == rita.pk and exported.workspace_id is None
    assert exported.metadata["filters"] == {"action__exact": "member.added", "actor": "alice@example.com"}


def test_a_secret_pasted_into_the_search_never_reaches_the_trail(client, root, cast, calls):
    raw = "mng_" + "0123456789abcdef" * 3
    client.force_login(root)
    _, body = _export(client, ToolCall, "csv", q=raw)
    assert body.count("\n") == 1  # the header: no row holds a whole token
    event = AuditEvent.objects.get(action=Action.AUDIT_EXPORTED)
    assert event.metadata["filters"] == {"q": "***"}


def test_changelist_links_to_the_export_of_its_filters(client, root, cast, calls):
    client.force_login(root)
    html = client.get(_url(ToolCall), {"status": "5xx", "p": "1"}).content.decode()
    assert f'href="{_url(ToolCall, "export", "csv")}?status=5xx"' in html
    assert f'href="{_url(ToolCall, "export", "jsonl")}?status=5xx"' in html


def test_export_refusals(client, root, cast, calls):
    client.force_login(root)
    assert client.get(_url(ToolCall, "export", "xml")).status_code == 404
    assert client.get(_url(ToolCall, "export", "csv"), {"nonsense__field": "1"}).status_code == 400
    staff = UserFactory(email="staff@example.com", is_staff=True)  # staff, but no audit permission
    client.force_login(staff)
    assert client.get(_url(ToolCall, "export", "csv")).status_code == 403
    client.logout()
    assert client.get(_url(ToolCall, "export", "csv")).status_code == 302  # to the sign-in page
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()


@pytest.mark.django_db(transaction=True)
async def test_export_streams_through_the_asgi_handler(async_client, root, cast, calls):
    # Served by an ASGI server, a synchronous iterator would be buffered whole; ours is async.
    await async_client.aforce_login(root)
    try:
        response = await async_client.get(_url(ToolCall, "export", "jsonl"), {"status": "5xx"})
        assert response.status_code == 200
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Django warns when it has to buffer a sync iterator
            chunks = [chunk async for chunk in response]
        lines = [json.loads(line) for chunk in chunks for line in chunk.splitlines()]
        assert sorted(line["tool_name"] for line in lines) == ["drop", "drop", "drop"]
        assert await AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).acount() == 1
    finally:
        # The view ran on asgiref's worker thread; its connection would keep the test database open.
        await sync_to_async(connections.close_all)()


# --- Security reviewers --------------------------------------------------------------


def test_security_reviewers_see_the_audit_trail_and_nothing_else(client, rita, cast, calls):
    client.force_login(rita)
    index = client.get(reverse("admin:index"))
    assert [app["app_label"] for app in index.context["app_list"]] == ["audit"]
    assert sorted(m["object_name"] for m in index.context["app_list"][0]["models"]) == [
        "AuditCheckpoint",
        "AuditEvent",
        "ToolCall",
    ]
    assert client.get(_url(ToolCall), {"status": "5xx"}).status_code == 200
    assert client.get(_url(AuditEvent)).status_code == 200
    assert client.get(_url(ToolCall, "change", calls.first().pk)).status_code == 200
    _export(client, ToolCall, "csv", status="5xx")

    for name in (
        "workspaces_workspace_changelist",
        "workspaces_membership_changelist",
        "workspaces_invitation_changelist",
        "tokens_gatewaytoken_changelist",
        "accounts_user_changelist",
        "accounts_apikey_changelist",
        "auth_group_changelist",
        "audit_auditchain_changelist",
    ):
        assert client.get(reverse(f"admin:{name}")).status_code == 403, name
    assert client.get(reverse("admin:workspaces_workspace_change", args=[cast.acme.pk])).status_code == 403
