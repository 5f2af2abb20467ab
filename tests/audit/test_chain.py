"""The hash chain: appends link up, and every kind of tampering behind the ORM's back is found."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AppendOnlyError, AuditChain, AuditCheckpoint, AuditEvent, ToolCall
from apps.audit.services import audit_event_record, retention_apply, tool_calls_record


def _calls(workspace, n, **extra):
    return [
        {
            "workspace_id": workspace.pk,
            "method": "tools/call",
            "tool_name": f"t{i}",
            "server_slug": "s",
            "status": 200,
            "latency_ms": i,
            "client_ip": "127.0.0.1",
            **extra,
        }
        for i in range(n)
    ]


def _verify(workspace):
    return [chain.verify_chain(c, model) for c, model in chain.iter_chains(workspace.pk)]


def test_rows_link_to_their_predecessor(cast):
    tool_calls_record(_calls(cast.acme, 5))
    rows = list(ToolCall.objects.filter(workspace=cast.acme).order_by("seq"))
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.row_hash
    head = AuditChain.objects.get(workspace=cast.acme, stream="calls")
    assert (head.last_seq, head.last_hash) == (5, rows[-1].row_hash)
    assert all(isinstance(r, chain.ChainReport) for r in _verify(cast.acme))


def test_workspaces_have_separate_chains(cast):
    tool_calls_record(_calls(cast.acme, 2) + _calls(cast.globex, 3))
    assert list(ToolCall.objects.filter(workspace=cast.globex).order_by("seq").values_list("seq", flat=True)) == [
        1,
        2,
        3,
    ]


def test_orm_refuses_update_and_delete(cast):
    tool_calls_record(_calls(cast.acme, 1))
    row = ToolCall.objects.get()
    with pytest.raises(AppendOnlyError):
        ToolCall.objects.update(status=500)
    with pytest.raises(AppendOnlyError):
        ToolCall.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        row.delete()
    row.status = 500
    with pytest.raises(AppendOnlyError):
        row.save()


def _table(model):
    return connection.ops.quote_name(model._meta.db_table)


def test_verify_finds_an_edited_row(cast):
    tool_calls_record(_calls(cast.acme, 5))
    row = ToolCall.objects.get(workspace=cast.acme, seq=3)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(ToolCall)} SET status = 403 WHERE id = %s", [row.pk])
    broken = [r for r in _verify(cast.acme) if isinstance(r, chain.Break)]
    assert len(broken) == 1 and broken[0].seq == 3 and "edited" in broken[0].reason


def test_verify_finds_a_deleted_row(cast):
    tool_calls_record(_calls(cast.acme, 5))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE seq = 2")
    (broken,) = [r for r in _verify(cast.acme) if isinstance(r, chain.Break)]
    assert broken.seq == 2 and "deleted" in broken.reason


def test_verify_finds_a_deleted_last_row(cast):
    tool_calls_record(_calls(cast.acme, 5))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE seq = 5")
    (broken,) = [r for r in _verify(cast.acme) if isinstance(r, chain.Break)]
    assert broken.seq == 5 and "missing" in broken.reason


def test_verify_finds_an_inserted_row(cast):
    tool_calls_record(_calls(cast.acme, 3))
    original = ToolCall.objects.get(workspace=cast.acme, seq=2)
    # Shift rows 2.. up by one and slip a forged row in at seq 2 with a self-consistent hash
    # (made with the real key: even a key holder cannot insert a row without breaking a link).
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(ToolCall)} SET seq = seq + 100 WHERE seq >= 2")
        cursor.execute(f"UPDATE {_table(ToolCall)} SET seq = seq - 99 WHERE seq >= 102")
    forged = ToolCall(
        chain_id=original.chain_id,
        workspace_id=cast.acme.pk,
        seq=2,
        prev_hash=original.prev_hash,
        method="tools/call",
        tool_name="forged",
        status=200,
        created_at=original.created_at,
        key_id=original.key_id,
    )
    forged.row_hash = chain.row_hash(forged.prev_hash, forged)
    forged.save()
    (broken,) = [r for r in _verify(cast.acme) if isinstance(r, chain.Break)]
    assert broken.seq == 3 and "previous-hash" in broken.reason


def test_audit_verify_command_exit_codes(cast, capsys):
    audit_event_record(workspace=cast.acme, actor=cast.alice, action=Action.WORKSPACE_UPDATED)
    call_command("audit_verify", "acme")
    assert "OK" in capsys.readouterr().out
    row = AuditEvent.objects.filter(workspace=cast.acme).order_by("seq").first()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(AuditEvent)} SET actor_repr = 'mallory@example.com' WHERE id = %s", [row.pk])
    with pytest.raises(SystemExit) as exit_info:
        call_command("audit_verify", "acme")
    assert exit_info.value.code == 1
    assert f"seq {row.seq}" in capsys.readouterr().err


def test_retention_leaves_a_verifiable_checkpoint(cast):
    old = timezone.now() - timedelta(days=200)
    tool_calls_record(_calls(cast.acme, 4, created_at=old))
    tool_calls_record(_calls(cast.acme, 2))
    deleted = retention_apply(workspace=cast.acme)
    assert deleted == 4
    assert list(ToolCall.objects.filter(workspace=cast.acme).values_list("seq", flat=True).order_by("seq")) == [5, 6]
    checkpoint = AuditCheckpoint.objects.get(chain__workspace=cast.acme, chain__stream="calls")
    assert checkpoint.seq == 4 and checkpoint.deleted_rows == 4
    assert all(isinstance(r, chain.ChainReport) for r in _verify(cast.acme))
    assert AuditEvent.objects.filter(workspace=cast.acme, action=Action.AUDIT_RETENTION_APPLIED).exists()


def test_retention_task_runs_for_every_workspace(cast):
    from apps.audit.tasks import apply_retention

    tool_calls_record(_calls(cast.globex, 3, created_at=timezone.now() - timedelta(days=100)))
    assert apply_retention.delay().get() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain(cast):
    errors: list[Exception] = []

    def writer():
        try:
            for _ in range(10):
                tool_calls_record(_calls(cast.acme, 5))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ToolCall.objects.filter(workspace=cast.acme).count() == 200
    assert all(isinstance(r, chain.ChainReport) for r in _verify(cast.acme))
