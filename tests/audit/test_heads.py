"""Signed head exports: the one defence against attack (c), a cut tail with the head rolled back.

Mallory holds only the database. She deletes the newest rows of a chain and moves
``AuditChain.last_seq`` / ``last_hash`` back to the new last row: every remaining row still
verifies. The heads exported every few minutes to a place she cannot write give her away.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditChain, ToolCall
from apps.audit.services import audit_event_record, audit_heads_export, retention_apply, tool_calls_record
from tests.audit.test_keys import MALLORYS_KEY, _calls, _table


def _cut_tail(workspace, keep: int) -> None:
    """Mallory: delete rows after ``keep`` and roll the head back to row ``keep``."""
    head = AuditChain.objects.get(workspace=workspace, stream="calls")
    last = ToolCall.objects.get(chain=head, seq=keep)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE chain_id = %s AND seq > %s", [head.pk, keep])
        cursor.execute(
            f"UPDATE {_table(AuditChain)} SET last_seq = %s, last_hash = %s WHERE id = %s",
            [keep, last.row_hash, head.pk],
        )


@pytest.fixture
def heads_file(tmp_path):
    return tmp_path / "heads.jsonl"


def _verify(*args, capsys) -> tuple[int, str, str]:
    try:
        call_command("audit_verify", *args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- The export -----------------------------------------------------------------------------


def test_every_chain_head_is_exported_signed_to_a_file(cast, heads_file):
    tool_calls_record(_calls(cast.acme, 3))
    audit_event_record(workspace=None, actor=None, action=Action.WORKSPACE_UPDATED)
    audit_heads_export(sink=str(heads_file))
    audit_heads_export(sink=str(heads_file))  # appended, not overwritten
    lines = [json.loads(line) for line in heads_file.read_text().splitlines()]
    assert len(lines) == 4
    acme_calls = next(line for line in lines if line["workspace"] == "acme")
    head = AuditChain.objects.get(workspace=cast.acme, stream="calls")
    assert acme_calls["workspace_id"] == cast.acme.pk and acme_calls["stream"] == "calls"
    assert (acme_calls["seq"], acme_calls["head_hash"]) == (3, head.last_hash)
    assert acme_calls["key_id"] == chain.keyring().signing_key_id and len(acme_calls["mac"]) == 64
    assert set(acme_calls) == {
        *("workspace", "workspace_id", "chain", "stream", "seq", "head_hash", "at", "key_id", "mac")
    }
    assert any(line["workspace"] is None and line["workspace_id"] is None for line in lines)  # the global chain


def test_the_default_sink_is_the_heads_logger_and_its_lines_verify_as_logged(cast, caplog, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 1))
    with caplog.at_level(logging.INFO, logger="mcpnest.audit.heads"):
        call_command("audit_heads")
    (record,) = [r for r in caplog.records if r.name == "mcpnest.audit.heads"]
    assert json.loads(record.getMessage())["workspace"] == "acme"
    # What a log shipper keeps: the line with the formatter's prefix.
    heads_file.write_text(f"2026-11-30 10:00:00,000 INFO mcpnest.audit.heads {record.getMessage()}\n")
    code, out, _ = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 0 and "OK acme heads: 1 exported heads" in out


def test_the_beat_task_exports_every_few_minutes(cast, heads_file):
    from apps.audit.tasks import export_heads

    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "apps.audit.tasks.export_heads")
    assert entry["schedule"] == 60 * settings.MCPNEST_AUDIT_HEAD_EXPORT_MINUTES
    assert entry["options"]["expires"] <= 60 * settings.MCPNEST_AUDIT_HEAD_EXPORT_MINUTES
    tool_calls_record(_calls(cast.acme, 2))
    with override_settings(MCPNEST_AUDIT_HEAD_EXPORT=str(heads_file)):
        assert export_heads.delay().get() == 1
    assert json.loads(heads_file.read_text())["seq"] == 2


# --- Attack (c) ---------------------------------------------------------------------------


def test_a_cut_tail_with_the_head_rolled_back_is_found_only_with_the_heads(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 10))
    audit_heads_export(sink=str(heads_file))
    _cut_tail(cast.acme, keep=7)

    code, out, _ = _verify("acme", capsys=capsys)
    assert code == 0 and "OK acme calls: 7 rows verified" in out  # the chain alone cannot tell

    code, _, err = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 1
    assert "calls chain was at seq 10" in err and "now ends at seq 7" in err and "truncation" in err


def test_a_rollback_followed_by_new_rows_is_found(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 5))
    audit_heads_export(sink=str(heads_file))
    _cut_tail(cast.acme, keep=3)
    tool_calls_record(_calls(cast.acme, 4))  # the gateway goes on writing: seq 4–7 again, other rows
    code, _, err = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 1 and "row 5 no longer has the hash" in err


def test_an_intact_chain_and_rows_removed_by_retention_pass(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 4, created_at=timezone.now() - timedelta(days=200)))
    audit_heads_export(sink=str(heads_file))  # seq 4: retention will delete that row
    tool_calls_record(_calls(cast.acme, 3))
    audit_heads_export(sink=str(heads_file))
    retention_apply(workspace=cast.acme)
    tool_calls_record(_calls(cast.acme, 1))
    code, out, err = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 0, err
    assert "OK acme heads: 2 exported heads still in the chains" in out


def test_a_head_line_edited_in_the_file_is_refused(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 5))
    audit_heads_export(sink=str(heads_file))
    line = json.loads(heads_file.read_text())
    line["seq"] = 3  # hide rows 4 and 5 from the check
    heads_file.write_text(json.dumps(line) + "\n")
    code, _, err = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 1 and "MAC does not verify" in err


def test_a_head_line_signed_with_another_key_is_refused(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 1))
    with override_settings(MCPNEST_AUDIT_KEYS=[MALLORYS_KEY]):
        audit_heads_export(sink=str(heads_file))
    code, _, err = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 1 and "signed with a key not in MCPNEST_AUDIT_KEYS" in err


def test_a_deleted_chain_is_found(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 2))
    audit_heads_export(sink=str(heads_file))
    head = AuditChain.objects.get(workspace=cast.acme, stream="calls")
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE chain_id = %s", [head.pk])
        cursor.execute(f"DELETE FROM {_table(AuditChain)} WHERE id = %s", [head.pk])
    code, _, err = _verify("acme", "--heads", str(heads_file), capsys=capsys)
    assert code == 1 and "calls chain is gone" in err


def test_without_a_slug_every_workspace_in_the_heads_file_is_verified(cast, heads_file, capsys):
    tool_calls_record(_calls(cast.acme, 3) + _calls(cast.globex, 4))
    audit_heads_export(sink=str(heads_file))
    code, out, _ = _verify("--heads", str(heads_file), capsys=capsys)
    assert code == 0
    assert "OK acme calls: 3 rows verified" in out and "OK globex calls: 4 rows verified" in out
    assert "OK acme heads" in out and "OK globex heads" in out

    _cut_tail(cast.globex, keep=2)
    code, out, err = _verify("--heads", str(heads_file), capsys=capsys)
    assert code == 1 and "BROKEN globex: calls chain was at seq 4" in err and "OK acme heads" in out


def test_a_slug_or_heads_is_required(cast):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--heads FILE"):
        call_command("audit_verify")
