"""Audit exports carry the chain hashes, so an auditor can re-verify them without MCPNest."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import warnings
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.audit import export
from apps.audit.events import Action
from apps.audit.models import AuditEvent, ToolCall
from apps.audit.services import audit_event_record, tool_calls_record

GENESIS = "0" * 64


def calls(workspace, n, **extra):
    return [
        {
            "workspace_id": workspace.pk,
            "method": "tools/call",
            "server_slug": "github",
            "tool_name": f"tool_{i}",
            "status": 200 if i % 3 else 403,
            "error_code": None if i % 3 else -32001,
            "latency_ms": 10 * i,
            "client_ip": "10.0.0.1",
            "member_repr": "carol@example.com",
            "token_prefix": "mng_0123abcd",
            **extra,
        }
        for i in range(n)
    ]


def events(cast):
    audit_event_record(
        workspace=cast.acme,
        actor=cast.alice,
        action=Action.ROLE_CHANGED,
        target_type="membership",
        target_id=7,
        target_repr="bob@example.com",
        metadata={"before": "member", "after": "admin", "note": "Zoë — ünïcode"},
        ip="192.0.2.1",
    )
    audit_event_record(workspace=cast.acme, actor=None, action=Action.TOKEN_REVOKED, metadata={"reason": "revoked"})


def offline_verify(lines: list[str]) -> int:
    """What an auditor given the audit key runs: only json, hmac and hashlib, and the documented rule."""
    keys = {
        hashlib.sha256(f"mcpnest-audit-key-id:{k}".encode()).hexdigest()[:16]: k for k in settings.MCPNEST_AUDIT_KEYS
    }
    prev = GENESIS
    for line in lines:
        row = json.loads(line)
        assert row["prev_hash"] == prev
        values = {k: v for k, v in row.items() if k not in ("id", "type", "prev_hash", "row_hash")}
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        message = f"{row['prev_hash']}\n{canonical}".encode()
        computed = hmac.new(keys[row["key_id"]].encode(), message, hashlib.sha256).hexdigest()
        assert computed == row["row_hash"], f"row seq {row['seq']} does not verify"
        prev = computed
    return len(lines)


def test_jsonl_rows_carry_hashes_and_verify_offline(cast):
    events(cast)
    tool_calls_record(calls(cast.acme, 7))
    for model, kind, expected in [(AuditEvent, "event", 2), (ToolCall, "call", 7)]:
        queryset = model.objects.filter(workspace=cast.acme).order_by("seq")
        lines = "".join(export.stream(queryset, "jsonl")).splitlines()
        rows = [json.loads(line) for line in lines]
        assert [row["type"] for row in rows] == [kind] * expected
        assert [row["row_hash"] for row in rows] == list(queryset.values_list("row_hash", flat=True))
        assert offline_verify(lines) == expected


def test_offline_verification_catches_an_edited_export(cast):
    events(cast)
    lines = "".join(export.stream(AuditEvent.objects.filter(workspace=cast.acme).order_by("seq"), "jsonl")).splitlines()
    row = json.loads(lines[0])
    row["actor_repr"] = "mallory@example.com"
    with pytest.raises(AssertionError, match="does not verify"):
        offline_verify([json.dumps(row), *lines[1:]])
    with pytest.raises(AssertionError):
        offline_verify(lines[1:])  # a dropped first row breaks the link


def test_csv_has_a_header_and_the_hashes(cast):
    tool_calls_record(calls(cast.acme, 4))
    queryset = ToolCall.objects.filter(workspace=cast.acme).order_by("seq")
    rows = list(csv.DictReader(io.StringIO("".join(export.stream(queryset, "csv")))))
    assert len(rows) == 4
    assert list(rows[0]) == export.COLUMNS[ToolCall]
    assert [row["row_hash"] for row in rows] == list(queryset.values_list("row_hash", flat=True))
    assert rows[0]["prev_hash"] == GENESIS and rows[1]["prev_hash"] == rows[0]["row_hash"]
    assert rows[0]["status"] == "403" and rows[0]["token_prefix"] == "mng_0123abcd"


def test_csv_serialises_metadata_as_json(cast):
    events(cast)
    queryset = AuditEvent.objects.filter(workspace=cast.acme).order_by("seq")
    first = next(csv.DictReader(io.StringIO("".join(export.stream(queryset, "csv")))))
    assert json.loads(first["metadata"]) == {"before": "member", "after": "admin", "note": "Zoë — ünïcode"}


def test_stream_refuses_unknown_formats(cast):
    with pytest.raises(ValueError, match="jsonl, csv"):
        list(export.stream(AuditEvent.objects.all(), "xml"))


def test_exports_name_their_kind_and_format():
    assert export.filename(ToolCall, "csv", "acme").startswith("mcpnest-acme-tool-calls-")
    assert export.filename(AuditEvent, "jsonl", "acme").endswith(".jsonl")
    assert export.CONTENT_TYPES == {"jsonl": "application/x-ndjson", "csv": "text/csv"}


# --- manage.py audit_export --------------------------------------------------------------


def run(*args) -> str:
    out = io.StringIO()
    call_command("audit_export", *args, stdout=out)
    return out.getvalue()


def test_command_exports_both_kinds_as_jsonl_and_only_this_workspace(cast):
    events(cast)
    tool_calls_record(calls(cast.acme, 3) + calls(cast.globex, 5))
    rows = [json.loads(line) for line in run("acme").splitlines()]
    # Two events, the export's own audit event, then the calls.
    assert [row["type"] for row in rows] == ["event"] * 3 + ["call"] * 3
    assert rows[2]["action"] == "audit.exported"
    assert {row["workspace"] for row in rows} == {cast.acme.pk}
    assert offline_verify([json.dumps(r) for r in rows if r["type"] == "call"]) == 3


def test_command_csv_of_calls(cast):
    events(cast)
    tool_calls_record(calls(cast.acme, 3))
    rows = list(csv.DictReader(io.StringIO(run("acme", "--format", "csv", "--kind", "calls"))))
    assert [row["tool_name"] for row in rows] == ["tool_0", "tool_1", "tool_2"]


def test_command_since_filters_by_time(cast):
    long_ago = timezone.now() - timedelta(days=30)
    tool_calls_record(calls(cast.acme, 2, created_at=long_ago))
    tool_calls_record(calls(cast.acme, 3))
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    recent = [json.loads(line) for line in run("acme", "--kind", "calls", "--since", since).splitlines()]
    assert [row["seq"] for row in recent] == [3, 4, 5]
    moment = (long_ago + timedelta(seconds=1)).isoformat()
    assert len(run("acme", "--kind", "calls", "--since", moment).splitlines()) == 3
    assert len(run("acme", "--kind", "calls", "--since", "2000-01-01").splitlines()) == 5


def test_command_errors(cast):
    with pytest.raises(CommandError, match="--since takes an ISO date"):
        run("acme", "--since", "last tuesday")
    with pytest.raises(CommandError, match="No workspace with slug 'nope'"):
        run("nope")
    with pytest.raises(CommandError, match="add --kind events or --kind calls"):
        run("acme", "--format", "csv")
    with pytest.raises(CommandError, match="invalid choice"):
        run("acme", "--format", "xml")


def test_export_response_is_read_in_batches_under_asgi(cast, monkeypatch):
    from asgiref.sync import async_to_sync

    tool_calls_record(calls(cast.acme, 5))
    monkeypatch.setattr(export.ExportResponse, "BATCH", 2)
    response = export.ExportResponse(
        ToolCall.objects.filter(workspace=cast.acme).order_by("seq"), "jsonl", label="acme"
    )
    assert response["Content-Disposition"].startswith('attachment; filename="mcpnest-acme-tool-calls-')

    async def read() -> list[bytes]:
        return [part async for part in response]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django warns when it has to buffer a sync iterator
        parts = async_to_sync(read)()
    assert [json.loads(part)["seq"] for part in parts] == [1, 2, 3, 4, 5]
