"""Hostile input never costs an audit row.

The inputs are the ones from the bug report: an MCP client named its request ids and
tools "x\\u0000", "\\ud800" and "echo\\u0000", an upstream answered error codes 2**40,
1.5e300 and "abc"; one such row made the whole batch fail, and after five retries the
recorder dropped every row of it. Run on SQLite and on PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import DataError, OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit import chain, sanitize
from apps.audit.events import Action
from apps.audit.models import AuditEvent, ToolCall
from apps.audit.services import AuditUnavailable, audit_event_record, tool_calls_record

QUARANTINED = ToolCall.QUARANTINED_METHOD


def record_id() -> str:
    return uuid.uuid4().hex


def good_calls(cast, n: int) -> list[dict]:
    """Carol's calls as the gateway's spool replays them: JSON values, created_at as text."""
    start = timezone.now() - timedelta(minutes=5)
    return [
        {
            "record_id": record_id(),
            "workspace_id": cast.acme.pk,
            "member_id": cast.carol.pk,
            "member_repr": cast.carol.email,
            "token_prefix": "mng_0123abcd",
            "server_slug": "fix",
            "tool_name": "echo",
            "method": "tools/call",
            "status": 200,
            "error_code": None,
            "latency_ms": 12,
            "client_ip": "10.0.0.7",
            "client_name": "claude-code",
            "client_version": "1.0",
            "session_id": "s-1",
            "request_id": str(i),
            "shadow_blocked": False,
            "created_at": (start + timedelta(milliseconds=i)).isoformat(),
        }
        for i in range(n)
    ]


def poison(cast, **values) -> dict:
    row = good_calls(cast, 1)[0]
    row.update(values)
    return row


def _verify(workspace_id) -> list:
    return [chain.verify_chain(c, model) for c, model in chain.iter_chains(workspace_id)]


def _intact(workspace_id) -> bool:
    results = _verify(workspace_id)
    return bool(results) and all(isinstance(r, chain.ChainReport) for r in results)


# --- The bug report, end to end --------------------------------------------------------


def test_a_big_batch_with_poison_rows_loses_no_row(cast, capsys):
    good = good_calls(cast, 2000)
    bad = [
        poison(cast, request_id="x\u0000", tool_name="x\u0000"),
        poison(cast, tool_name="\ud800", request_id="\ud800"),
        poison(cast, tool_name="echo\u0000", error_code=2**40),
        poison(cast, error_code=1.5e300),
        poison(cast, error_code="abc"),
        poison(cast, status="abc", latency_ms=-5, shadow_blocked="yes"),
        poison(cast, client_name="a" * 5000, client_ip="not-an-ip"),
    ]
    unusable = [
        poison(cast, created_at="yesterday-ish"),  # not a date: quarantined in its workspace's chain
        poison(cast, surprise="field"),  # an unknown key
        poison(cast, workspace_id="acme"),  # no usable workspace: the global chain
    ]
    batch = good[:700] + bad[:3] + good[700:1400] + bad[3:] + unusable + good[1400:]

    assert tool_calls_record(batch) == len(batch)

    acme = ToolCall.objects.filter(workspace=cast.acme)
    assert acme.filter(quarantine="").count() == 2000
    assert set(acme.filter(quarantine="").values_list("record_id", flat=True)) == {c["record_id"] for c in good}
    by_id = {c.record_id: c for c in ToolCall.objects.filter(record_id__in=[c["record_id"] for c in bad + unusable])}
    assert len(by_id) == len(bad) + len(unusable)  # every poison row has its row

    nul = by_id[bad[0]["record_id"]]
    assert (nul.tool_name, nul.request_id, nul.status) == ("x", "x", 200)
    assert nul.quarantine.startswith("cleaned: tool_name: removed 1 control character(s)")
    surrogate = by_id[bad[1]["record_id"]]
    assert surrogate.tool_name == "\\ud800" and "unencodable" in surrogate.quarantine
    huge = by_id[bad[2]["record_id"]]
    assert (huge.tool_name, huge.error_code) == ("echo", None)
    assert "error_code: 1099511627776 is not a 32-bit integer" in huge.quarantine
    assert by_id[bad[3]["record_id"]].error_code is None and "1.5e+300" in by_id[bad[3]["record_id"]].quarantine
    assert by_id[bad[4]["record_id"]].error_code is None and '"abc"' in by_id[bad[4]["record_id"]].quarantine
    odd = by_id[bad[5]["record_id"]]
    assert (odd.status, odd.latency_ms, odd.shadow_blocked) == (0, 0, True)
    long = by_id[bad[6]["record_id"]]
    assert len(long.client_name) == 100 and long.client_ip == "" and "truncated from 5000" in long.quarantine

    for values in unusable:
        row = by_id[values["record_id"]]
        assert row.method == QUARANTINED and row.status == 0 and row.quarantine.startswith("quarantined: ")
    assert by_id[unusable[0]["record_id"]].workspace_id == cast.acme.pk
    assert by_id[unusable[1]["record_id"]].workspace_id == cast.acme.pk
    assert by_id[unusable[2]["record_id"]].workspace_id is None
    assert "workspace_id is not a positive integer" in by_id[unusable[2]["record_id"]].quarantine

    call_command("audit_verify", "acme")
    call_command("audit_verify", "global")
    out = capsys.readouterr().out
    assert f"OK acme calls: {2000 + len(bad) + 2} rows verified (from seq 1), {len(bad) + 2} quarantined" in out
    assert "OK global calls: 1 rows verified (from seq 1), 1 quarantined (see admin)" in out


def test_quarantine_notes_hold_no_nul_and_only_ascii(cast):
    original = poison(cast, tool_name=["x\u0000", "\ud800"], request_id="y\u0000" * 5000)
    tool_calls_record([original])
    row = ToolCall.objects.get(record_id=original["record_id"])
    assert row.method == QUARANTINED
    assert "tool_name is a list, not text" in row.quarantine
    assert "\x00" not in row.quarantine and row.quarantine.isascii()
    assert len(row.quarantine) <= sanitize.NOTE_MAX
    # NUL shows as the visible text \u0000 (an escaped backslash in the JSON), not as a JSON
    # escape that would turn back into NUL (and that a jsonb column would refuse).
    assert r'"tool_name": ["x\\u0000", "\\ud800"]' in row.quarantine
    assert r'"y\\u0000y' in row.quarantine


def test_a_dict_that_is_not_a_dict_is_quarantined_in_the_global_chain(cast):
    assert tool_calls_record([{"_spool_line": '{"workspace_id": 1, "tool_na'}, None]) == 2
    rows = ToolCall.objects.filter(workspace=None).order_by("seq")
    assert [r.method for r in rows] == [QUARANTINED, QUARANTINED]
    assert "_spool_line" in rows[0].quarantine and "not a dict" in rows[1].quarantine
    assert _intact(None)


# --- Values made storable ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored", "noted"),
    [
        (None, None, False),
        (-32603, -32603, False),
        (2**31 - 1, 2**31 - 1, False),
        (-(2**31), -(2**31), False),
        (2**31, None, True),
        (2**40, None, True),
        (1.5e300, None, True),
        (-32603.0, None, True),
        ("abc", None, True),
        (True, None, True),
    ],
)
def test_error_codes_outside_32_bits_are_stored_empty_with_a_note(cast, value, stored, noted):
    call = sanitize.tool_call_from_dict(poison(cast, error_code=value))
    assert call.error_code == stored
    assert bool(call.quarantine) is noted


@pytest.mark.parametrize(
    ("value", "stored"),
    [("", ""), ("plain", "plain"), ("tab\there", "tab\there"), ("a\u0000b\nc\x7fd\x85", "abcd"), ("\ud83d", "\\ud83d")],
)
def test_clean_text(value, stored):
    assert sanitize.clean_text(value, 200)[0] == stored


def test_created_at_may_be_a_datetime_or_iso_text(cast):
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    for value in (moment, moment.isoformat(), "2026-03-01T12:30:15.123456Z", "2026-03-01T12:30:15.123456"):
        call = sanitize.tool_call_from_dict(poison(cast, created_at=value))
        assert call.created_at == moment and not call.quarantine


def test_latency_is_clamped_and_flags_coerced(cast):
    call = sanitize.tool_call_from_dict(poison(cast, latency_ms=1.5e300, shadow_blocked=1))
    assert call.latency_ms == 2**31 - 1 and call.shadow_blocked is True
    assert "latency_ms" in call.quarantine and "shadow_blocked" not in call.quarantine


def test_a_bad_record_id_is_dropped_with_a_note(cast):
    call = sanitize.tool_call_from_dict(poison(cast, record_id="NOT-HEX"))
    assert call.record_id is None and "record_id" in call.quarantine


def test_event_metadata_and_text_survive_nul_and_surrogates(cast):
    audit_event_record(
        workspace=cast.acme,
        actor=cast.alice,
        action=Action.SERVER_ADDED,
        target_type="server",
        target_id="x\u0000",
        target_repr="srv\u0000\ud800",
        metadata={"name": "a\u0000b", "odd": "\ud800", "nested": {"k\u0000": ["v\u0000"]}, "n": float("nan")},
    )
    event = AuditEvent.objects.get(workspace=cast.acme)
    assert (event.target_id, event.target_repr) == ("x", "srv\\ud800")
    assert event.metadata == {"name": "ab", "odd": "\\ud800", "nested": {"k": ["v"]}, "n": "nan"}
    assert _intact(cast.acme.pk)


# --- Replays write nothing twice -----------------------------------------------------------------


def test_a_replayed_batch_is_skipped_by_record_id(cast):
    batch = [*good_calls(cast, 50), poison(cast, tool_name="x\u0000"), poison(cast, created_at="??")]
    assert tool_calls_record(batch) == 52
    assert tool_calls_record(batch) == 0  # the spool replays after a crash that came after the commit
    assert tool_calls_record(batch[:10] + good_calls(cast, 3)) == 3
    assert tool_calls_record([batch[0], batch[0]]) == 0
    assert ToolCall.objects.filter(workspace=cast.acme).count() == 55
    assert _intact(cast.acme.pk)


def test_duplicates_within_one_batch_are_written_once(cast):
    (call,) = good_calls(cast, 1)
    assert tool_calls_record([call, dict(call)]) == 1


def test_the_replay_check_is_one_query_per_batch(cast):
    batch = good_calls(cast, 1000)
    with CaptureQueriesContext(connection) as queries:
        tool_calls_record(batch)
    lookups = [q["sql"] for q in queries.captured_queries if "record_id" in q["sql"] and "IN (" in q["sql"]]
    assert len(lookups) == 1


# --- A row the database refuses costs only itself -------------------------------------------------


def _refuse(marker: str, error=DataError):
    """A database that refuses any statement carrying ``marker`` (and answers everything else)."""

    def carries(value) -> bool:  # PostgreSQL's bulk insert passes each column as one array
        return value == marker or (isinstance(value, list | tuple) and any(carries(v) for v in value))

    def wrapper(execute, sql, params, many, context):
        if params and carries(params):
            raise error(f"refused {marker!r}")
        return execute(sql, params, many, context)

    return wrapper


def test_a_refused_row_is_isolated_and_quarantined(cast):
    batch = good_calls(cast, 300)
    batch[137]["tool_name"] = "boom"
    with connection.execute_wrapper(_refuse("boom")):
        assert tool_calls_record(batch) == 300
    rows = list(ToolCall.objects.filter(workspace=cast.acme).order_by("seq"))
    assert [r.record_id for r in rows] == [c["record_id"] for c in batch]  # order kept
    refused = rows[137]
    assert refused.method == QUARANTINED and refused.tool_name == "" and refused.status == 0
    assert "the database refused the row: DataError: refused 'boom'" in refused.quarantine
    assert '"tool_name": "boom"' in refused.quarantine
    assert sum(1 for r in rows if r.quarantine) == 1
    assert _intact(cast.acme.pk)


# --- A database that does not answer: raise, lose nothing -------------------------------------------


def _down(predicate=lambda sql: True, error=OperationalError):
    def wrapper(execute, sql, params, many, context):
        if predicate(sql):
            raise error("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    return wrapper


def test_a_database_that_does_not_answer_raises_and_a_retry_writes_everything_once(cast):
    batch = [*good_calls(cast, 20), poison(cast, tool_name="x\u0000")]
    with connection.execute_wrapper(_down()), pytest.raises(AuditUnavailable) as raised:
        tool_calls_record(batch)
    assert isinstance(raised.value.__cause__, OperationalError)
    assert not ToolCall.objects.exists()
    assert tool_calls_record(batch) == 21
    assert _intact(cast.acme.pk)


def test_an_outage_between_workspaces_is_retried_without_duplicates(cast):
    acme = good_calls(cast, 5)
    globex = [dict(c, workspace_id=cast.globex.pk, tool_name="globex-tool") for c in good_calls(cast, 5)]
    with connection.execute_wrapper(_refuse("globex-tool", OperationalError)), pytest.raises(AuditUnavailable):
        tool_calls_record(acme + globex)
    assert ToolCall.objects.filter(workspace=cast.acme).count() == 5  # committed before the outage
    assert not ToolCall.objects.filter(workspace=cast.globex).exists()
    assert tool_calls_record(acme + globex) == 5  # the recorder's retry: acme's rows are skipped
    assert ToolCall.objects.count() == 10 and not ToolCall.objects.exclude(quarantine="").exists()


def test_a_refusal_while_the_database_stops_answering_quarantines_nothing(cast):
    batch = good_calls(cast, 10)
    batch[3]["tool_name"] = "boom"
    not_answering = _down(lambda sql: sql == "SELECT 1")
    with (
        connection.execute_wrapper(_refuse("boom")),
        connection.execute_wrapper(not_answering),
        pytest.raises(AuditUnavailable) as raised,
    ):
        tool_calls_record(batch)
    assert isinstance(raised.value.__cause__, DataError)
    assert not ToolCall.objects.exists()


def test_a_locked_database_is_retried_not_quarantined(cast):
    insert = lambda sql: sql.startswith("INSERT") and "toolcall" in sql.lower()  # noqa: E731
    with connection.execute_wrapper(_down(insert)), pytest.raises(AuditUnavailable):
        tool_calls_record(good_calls(cast, 10))
    assert not ToolCall.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_postgresql_backend_killed_mid_flight(cast, require_postgres):
    import psycopg

    batch = good_calls(cast, 50)
    tool_calls_record(batch[:10])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    settings_dict = connection.settings_dict
    with psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        host=settings_dict["HOST"],
        port=settings_dict["PORT"] or 5432,
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(AuditUnavailable):
        tool_calls_record(batch)
    connection.close()  # what close_old_connections() does for the recorder between attempts
    assert tool_calls_record(batch) == 40
    assert ToolCall.objects.count() == 50
    assert _intact(cast.acme.pk)


# --- The recorder's fast path stores and signs what the models would ----------------------------


def _variety(cast) -> list[dict]:
    """Rows of every kind the writer meets: plain, with an OAuth client, cleaned, quarantined."""
    return [
        *good_calls(cast, 3),
        poison(cast, oauth_client="claude-desktop", member_id=None, member_repr=""),
        poison(cast, created_at="2026-03-01T12:30:15.5+02:00", shadow_blocked=True, error_code=-32001),
        poison(cast, created_at=datetime(2026, 3, 1, 12, 30, 15, tzinfo=UTC), latency_ms=2**40, status=503),
        poison(cast, tool_name="x\u0000\ud800", client_name="é" * 300, client_ip=" ::1 ", request_id=7),
        poison(cast, error_code="abc", record_id="NOT-HEX", status="200"),
        poison(cast, surprise="field"),  # quarantined, its created_at kept
        poison(cast, tool_name=["a list"]),
    ]


def test_the_fast_path_hashes_exactly_the_model_hashed_values(cast):
    for values in [*_variety(cast), None, {"workspace_id": "acme"}]:
        row = sanitize.tool_call_values(values)
        model = ToolCall(**row, chain_id=3, seq=9, key_id="0123456789abcdef")
        from_row = ToolCall.hashed_values_of(row, chain_id=3, seq=9, key_id="0123456789abcdef")
        assert chain.canonical(from_row) == chain.canonical(model.hashed_values()), values


def _stored(workspace_id: int) -> list[tuple]:
    """Every column as the database holds it, but those that name the chain, row or workspace
    (and a quarantine row's copy of the original, which names them too)."""
    skip = {"id", "chain_id", "seq", "prev_hash", "row_hash", "workspace_id", "record_id", "quarantine"}
    columns = [f.column for f in ToolCall._meta.concrete_fields if f.column not in skip]
    columns.append("quarantine")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM audit_toolcall WHERE workspace_id = %s ORDER BY seq",
            [workspace_id],
        )
        return [
            (*row[:-1], row[-1].split("\noriginal: ")[0] if row[-1].startswith("quarantined: ") else row[-1])
            for row in cursor.fetchall()
        ]


def test_the_fast_path_stores_what_bulk_create_stores(cast):
    calls = _variety(cast)
    # The model path (chain.append: model instances, bulk_create) for acme...
    assert len(chain.append([sanitize.tool_call_from_dict(values) for values in calls])) == len(calls)
    # ...and the recorder's path for the same calls in globex.
    moved = [dict(values, workspace_id=cast.globex.pk) for values in calls]
    for values in moved:
        if values["record_id"] != "NOT-HEX":  # a fresh id, else it is skipped as written
            values["record_id"] = record_id()
    assert tool_calls_record(moved) == len(calls)
    assert _stored(cast.globex.pk) == _stored(cast.acme.pk)
    assert len(_stored(cast.acme.pk)) == len(calls)
    assert _intact(cast.acme.pk) and _intact(cast.globex.pk)
    # And chains mixing both paths verify: the same MACs either way.
    assert tool_calls_record(good_calls(cast, 5)) == 5
    chain.append([sanitize.tool_call_from_dict(values) for values in good_calls(cast, 2)])
    assert tool_calls_record(good_calls(cast, 3)) == 3
    assert _intact(cast.acme.pk)


def test_the_fast_path_refuses_a_value_too_long_for_its_column_and_never_truncates_it(cast):
    # Cleaning shortens every value first; were one to slip past it, the INSERT must refuse the
    # row (which the audit service then quarantines) rather than store a value its MAC does not
    # cover. (PostgreSQL's explicit casts to varchar(n) truncate silently; the fast path casts
    # its column arrays to varchar without a length for that reason.)
    row = sanitize.tool_call_values(good_calls(cast, 1)[0])
    row["server_slug"] = "s" * (ToolCall._meta.get_field("server_slug").max_length + 1)
    if connection.vendor == "sqlite":  # SQLite does not enforce lengths: the value is kept whole
        assert chain.append_tool_calls([row]) == 1
        assert ToolCall.objects.get(record_id=row["record_id"]).server_slug == row["server_slug"]
        return
    with pytest.raises(DataError):
        chain.append_tool_calls([row])
    assert not ToolCall.objects.exists()


def test_the_fast_path_writes_the_global_chain_too(cast):
    assert tool_calls_record([poison(cast, workspace_id=None), poison(cast, workspace_id="x")]) == 2
    assert tool_calls_record([poison(cast, workspace_id=None)]) == 1
    assert ToolCall.objects.filter(workspace=None).count() == 3
    assert _intact(None)


def test_spool_lines_are_parsed_whole_and_a_torn_line_alone():
    from relay.spool import _lines

    good = [{"record_id": record_id(), "tool_name": "echo", "n": n} for n in range(3)]
    lines = [json.dumps(row).encode() for row in good]
    assert _lines(b"\n".join(lines) + b"\n\n") == good
    torn = lines[1][:20]
    rows = _lines(b"\n".join([lines[0], torn + lines[2], b"[1, 2]", b"{}"]))
    assert rows[0] == good[0] and rows[2] == {"_spool_line": "[1, 2]"} and rows[3] == {}
    assert rows[1] == {"_spool_line": (torn + lines[2]).decode()}
    assert _lines(b"") == []
