"""The keyed chain: mallory holds only the database (she can run any SQL), not MCPNEST_AUDIT_KEYS.

Every attack here passed verification when rows were hashed with plain SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditChain, AuditCheckpoint, AuditEvent, ToolCall
from apps.audit.services import audit_event_record, retention_apply, tool_calls_record

OLD_KEY = "old-audit-key-" + "1" * 40
NEW_KEY = "new-audit-key-" + "2" * 40
MALLORYS_KEY = "mallory-made-this-key-" + "3" * 40


def _calls(workspace, n, **extra):
    return [
        {"workspace_id": workspace.pk, "method": "tools/call", "tool_name": f"t{i}", "status": 200, **extra}
        for i in range(n)
    ]


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _verify(workspace) -> list:
    return [chain.verify_chain(c, model) for c, model in chain.iter_chains(workspace.pk)]


def _breaks(workspace) -> list[chain.Break]:
    return [r for r in _verify(workspace) if isinstance(r, chain.Break)]


def _sha256(prev: str, record) -> str:
    return hashlib.sha256(f"{prev}\n{chain.canonical(record.hashed_values())}".encode()).hexdigest()


def _hmac_with(key: str):
    def mac(prev: str, record) -> str:
        message = f"{prev}\n{chain.canonical(record.hashed_values())}".encode()
        return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()

    return mac


def _relink(model, chain_id: int, from_seq: int, hash_rows, key_id: str | None = None) -> None:
    """Mallory's rewrite: recompute every row from ``from_seq`` on, re-link them, move the head."""
    rows = list(model.objects.filter(chain_id=chain_id).order_by("seq"))
    prev = rows[from_seq - 2].row_hash if from_seq > 1 else "0" * 64
    with connection.cursor() as cursor:
        for row in rows[from_seq - 1 :]:
            if key_id is not None:
                row.key_id = key_id
            row.prev_hash = prev
            prev = hash_rows(prev, row)
            cursor.execute(
                f"UPDATE {_table(model)} SET prev_hash = %s, row_hash = %s, key_id = %s WHERE id = %s",
                [row.prev_hash, prev, row.key_id, row.pk],
            )
        cursor.execute(f"UPDATE {_table(AuditChain)} SET last_hash = %s WHERE id = %s", [prev, chain_id])


# --- What a row carries -------------------------------------------------------------


def test_rows_carry_an_hmac_under_the_first_key_and_its_id(cast):
    tool_calls_record(_calls(cast.acme, 2))
    first, second = ToolCall.objects.filter(workspace=cast.acme).order_by("seq")
    from django.conf import settings

    key = settings.MCPNEST_AUDIT_KEYS[0]
    assert first.key_id == hashlib.sha256(f"mcpnest-audit-key-id:{key}".encode()).hexdigest()[:16]
    assert first.row_hash == _hmac_with(key)("0" * 64, first)
    assert first.row_hash != _sha256("0" * 64, first)
    assert second.prev_hash == first.row_hash and second.row_hash == _hmac_with(key)(first.row_hash, second)


def test_the_key_id_is_part_of_what_is_maced(cast):
    audit_event_record(workspace=cast.acme, actor=cast.alice, action=Action.WORKSPACE_UPDATED)
    event = AuditEvent.objects.get(workspace=cast.acme)
    assert "key_id" in event.hashed_values()


# --- Attack (a): rewrite a row and re-link everything after it ------------------------------


@pytest.mark.parametrize("hash_rows", [_sha256, _hmac_with(MALLORYS_KEY)], ids=["plain-sha256", "wrong-key"])
def test_a_rewritten_and_relinked_row_is_found(cast, capsys, hash_rows):
    tool_calls_record(_calls(cast.acme, 5))
    row = ToolCall.objects.get(workspace=cast.acme, seq=3)
    with connection.cursor() as cursor:  # mallory turns a refused call into a successful one…
        cursor.execute(f"UPDATE {_table(ToolCall)} SET status = 200, tool_name = 'harmless' WHERE id = %s", [row.pk])
    _relink(ToolCall, row.chain_id, 3, hash_rows)  # …and makes rows 3–5 and the head consistent again

    with pytest.raises(SystemExit) as exit_info:
        call_command("audit_verify", "acme")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "seq 3" in err and "row edited" in err


def test_a_row_relinked_under_a_key_id_of_her_own_names_an_unknown_key(cast):
    tool_calls_record(_calls(cast.acme, 4))
    row = ToolCall.objects.get(workspace=cast.acme, seq=2)
    _relink(ToolCall, row.chain_id, 2, _hmac_with(MALLORYS_KEY), key_id=chain.key_id(MALLORYS_KEY))
    (broken,) = _breaks(cast.acme)
    assert broken.seq == 2
    assert "signed with a key not in MCPNEST_AUDIT_KEYS" in broken.reason


def test_an_unkeyed_row_is_a_break(cast):
    tool_calls_record(_calls(cast.acme, 2))
    row = ToolCall.objects.get(workspace=cast.acme, seq=2)
    _relink(ToolCall, row.chain_id, 2, _sha256, key_id="")
    (broken,) = _breaks(cast.acme)
    assert broken.seq == 2 and "key not in MCPNEST_AUDIT_KEYS" in broken.reason


# --- Rotation ------------------------------------------------------------------------


def test_rotation_prepending_a_key_keeps_old_rows_verifiable(cast, capsys):
    with override_settings(MCPNEST_AUDIT_KEYS=[OLD_KEY]):
        tool_calls_record(_calls(cast.acme, 3))
        audit_event_record(workspace=cast.acme, actor=cast.alice, action=Action.WORKSPACE_UPDATED)
    with override_settings(MCPNEST_AUDIT_KEYS=[NEW_KEY, OLD_KEY]):
        tool_calls_record(_calls(cast.acme, 2))
        key_ids = list(ToolCall.objects.filter(workspace=cast.acme).order_by("seq").values_list("key_id", flat=True))
        assert key_ids == [chain.key_id(OLD_KEY)] * 3 + [chain.key_id(NEW_KEY)] * 2
        assert not _breaks(cast.acme)
        call_command("audit_verify", "acme")
        assert "OK acme calls: 5 rows verified" in capsys.readouterr().out
    with override_settings(MCPNEST_AUDIT_KEYS=[NEW_KEY]):  # the old key dropped too early
        (calls_break, events_break) = sorted(_breaks(cast.acme), key=lambda b: b.chain.stream)
        assert calls_break.seq == 1 and "signed with a key not in MCPNEST_AUDIT_KEYS" in calls_break.reason
        assert events_break.seq == 1


def test_with_debug_and_no_keys_a_key_is_derived_from_the_secret_key(cast):
    with override_settings(MCPNEST_AUDIT_KEYS=[]):
        tool_calls_record(_calls(cast.acme, 2))
        assert not _breaks(cast.acme)
        derived = ToolCall.objects.filter(workspace=cast.acme).first().key_id
    assert derived and _breaks(cast.acme)  # the configured key cannot verify them


def test_short_keys_are_refused(cast):
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(MCPNEST_AUDIT_KEYS=["too-short"]), pytest.raises(ImproperlyConfigured):
        tool_calls_record(_calls(cast.acme, 1))


# --- Attack (b): a forged retention checkpoint hides a deleted prefix ------------------------


def test_retention_checkpoints_are_signed(cast):
    tool_calls_record(_calls(cast.acme, 3, created_at=timezone.now() - timedelta(days=200)))
    tool_calls_record(_calls(cast.acme, 2))
    retention_apply(workspace=cast.acme)
    checkpoint = AuditCheckpoint.objects.get(chain__workspace=cast.acme, chain__stream="calls")
    assert checkpoint.key_id == chain.keyring().signing_key_id and len(checkpoint.mac) == 64
    assert chain.checkpoint_problem(checkpoint) is None
    assert not _breaks(cast.acme)


@pytest.mark.parametrize("mac", ["plain-sha256", "wrong-key", "blank"])
def test_a_forged_checkpoint_with_a_deleted_prefix_is_found(cast, capsys, mac):
    tool_calls_record(_calls(cast.acme, 6))
    third = ToolCall.objects.get(workspace=cast.acme, seq=3)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE chain_id = %s AND seq <= 3", [third.chain_id])
    forged = AuditCheckpoint(
        chain_id=third.chain_id, seq=3, row_hash=third.row_hash, deleted_rows=3, key_id=chain.keyring().signing_key_id
    )
    message = f"{chain.CHECKPOINT_LABEL}\n{chain.canonical(forged.signed_values())}".encode()
    forged.mac = {
        "plain-sha256": hashlib.sha256(message).hexdigest(),
        "wrong-key": hmac.new(MALLORYS_KEY.encode(), message, hashlib.sha256).hexdigest(),
        "blank": "",
    }[mac]
    forged.save()

    with pytest.raises(SystemExit):
        call_command("audit_verify", "acme")
    assert "forged retention checkpoint" in capsys.readouterr().err


def test_a_genuine_checkpoint_moved_forward_to_hide_more_rows_is_found(cast):
    tool_calls_record(_calls(cast.acme, 2, created_at=timezone.now() - timedelta(days=200)))
    tool_calls_record(_calls(cast.acme, 4))
    retention_apply(workspace=cast.acme)
    fourth = ToolCall.objects.get(workspace=cast.acme, seq=4)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE chain_id = %s AND seq <= 4", [fourth.chain_id])
        cursor.execute(
            f"UPDATE {_table(AuditCheckpoint)} SET seq = 4, row_hash = %s, deleted_rows = 4 WHERE chain_id = %s",
            [fourth.row_hash, fourth.chain_id],
        )
    (broken,) = _breaks(cast.acme)
    assert "forged retention checkpoint" in broken.reason


def test_a_checkpoint_copied_from_another_chain_is_found(cast):
    tool_calls_record(_calls(cast.globex, 2, created_at=timezone.now() - timedelta(days=200)))
    retention_apply(workspace=cast.globex)
    genuine = AuditCheckpoint.objects.get(chain__workspace=cast.globex, chain__stream="calls")
    tool_calls_record(_calls(cast.acme, 3))
    acme_chain = AuditChain.objects.get(workspace=cast.acme, stream="calls")
    second = ToolCall.objects.get(chain=acme_chain, seq=2)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(ToolCall)} WHERE chain_id = %s AND seq <= 2", [acme_chain.pk])
    AuditCheckpoint.objects.create(
        chain=acme_chain,
        seq=2,
        row_hash=second.row_hash,
        deleted_rows=2,
        created_at=genuine.created_at,
        key_id=genuine.key_id,
        mac=genuine.mac,
    )
    (broken,) = _breaks(cast.acme)
    assert "forged retention checkpoint" in broken.reason


# --- The one-time upgrade of existing (unkeyed) chains ------------------------------------------

rekey_migration = importlib.import_module("apps.audit.migrations.0006_rekey_chains")


def _make_legacy() -> None:
    """Rewrite every chain as the unkeyed code wrote it (SHA-256, no key id, unsigned checkpoints)."""
    with connection.cursor() as cursor:
        for head in AuditChain.objects.all():
            model = chain.model_for(head.stream)
            checkpoint = AuditCheckpoint.objects.filter(chain=head).order_by("-seq").first()
            prev = checkpoint.row_hash if checkpoint else "0" * 64
            for row in model.objects.filter(chain=head).order_by("seq"):
                row_hash = rekey_migration._unkeyed_hash(prev, row, head.stream)
                cursor.execute(
                    f"UPDATE {_table(model)} SET prev_hash = %s, row_hash = %s, key_id = '' WHERE id = %s",
                    [prev, row_hash, row.pk],
                )
                prev = row_hash
            cursor.execute(f"UPDATE {_table(AuditChain)} SET last_hash = %s WHERE id = %s", [prev, head.pk])
        cursor.execute(f"UPDATE {_table(AuditCheckpoint)} SET key_id = '', mac = ''")


@pytest.fixture
def legacy_trail(cast):
    audit_event_record(workspace=cast.acme, actor=cast.alice, action=Action.WORKSPACE_UPDATED, metadata={"n": "Zoë"})
    tool_calls_record(_calls(cast.acme, 3, created_at=timezone.now() - timedelta(days=200)))
    tool_calls_record(_calls(cast.acme, 4, error_code=-32001))
    tool_calls_record(_calls(cast.globex, 2))
    retention_apply(workspace=cast.acme)  # a checkpoint in the acme calls chain
    _make_legacy()
    assert _breaks(cast.acme) and _breaks(cast.globex)  # unkeyed rows do not verify any more


def test_the_upgrade_rekeys_existing_chains_under_the_first_key(cast, legacy_trail, capsys):
    rekey_migration.rekey(django_apps, None)
    assert not _breaks(cast.acme) and not _breaks(cast.globex)
    assert set(ToolCall.objects.values_list("key_id", flat=True)) == {chain.keyring().signing_key_id}
    checkpoint = AuditCheckpoint.objects.get(chain__workspace=cast.acme, chain__stream="calls")
    assert chain.checkpoint_problem(checkpoint) is None
    # The remaining rows still link to the checkpoint (the hash of a row retention deleted).
    assert ToolCall.objects.get(workspace=cast.acme, seq=4).prev_hash == checkpoint.row_hash
    rekey_migration.rekey(django_apps, None)  # running it again changes nothing
    assert not _breaks(cast.acme)
    assert "did not verify" not in capsys.readouterr().out


def test_the_upgrade_does_not_launder_a_chain_already_tampered_with(cast, legacy_trail, capsys):
    row = ToolCall.objects.get(workspace=cast.globex, seq=2)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(ToolCall)} SET status = 500 WHERE id = %s", [row.pk])
    rekey_migration.rekey(django_apps, None)
    assert "1 chain(s) did not verify" in capsys.readouterr().out
    assert not _breaks(cast.acme)  # the others were re-keyed
    assert ToolCall.objects.get(pk=row.pk).key_id == ""  # left as it was…
    assert _breaks(cast.globex)  # …so it is still reported


def test_the_upgrade_reverses(cast, legacy_trail):
    before = dict(ToolCall.objects.values_list("pk", "row_hash"))
    rekey_migration.rekey(django_apps, None)
    rekey_migration.unkey(django_apps, None)
    assert dict(ToolCall.objects.values_list("pk", "row_hash")) == before
    rekey_migration.rekey(django_apps, None)
    assert not _breaks(cast.acme)
