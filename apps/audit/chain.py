"""Appending to, and verifying, the audit hash chains.

**Keyed chain.** Every row's ``row_hash`` is

    HMAC-SHA256(key, prev_hash + "\\n" + canonical JSON of row.hashed_values())

where the values include ``key_id``, the short public id of the key (the first 16 hex of
SHA-256 of ``"mcpnest-audit-key-id:" + key``). The keys are ``MCPNEST_AUDIT_KEYS``: the
first signs new rows, every one verifies (rotate by prepending a new key; drop an old one
only once no kept row or checkpoint names it). Retention checkpoints carry a MAC too, and
so does every exported chain head (``apps.audit.heads``).

What the key protects against: someone who can write to the database but does not hold a
key (a leaked database password, an operator with SQL access, an edited backup, SQL
injection elsewhere). With plain SHA-256 they could rewrite a row, recompute its hash and
re-link every later row, and verification would pass; now any row or checkpoint they
write fails to verify, because they cannot compute its MAC.

What it does not protect against: cutting the newest rows off and rolling the head
(``AuditChain.last_seq`` / ``last_hash``) back to the new last row leaves a shorter chain
that verifies. The signed head export detects that, when the exported heads are kept
where the database's administrators cannot write (``apps.audit.heads``). Neither measure
protects against someone who holds a key (whoever can read the application servers'
environment can forge rows, checkpoints and heads); keep the keys out of the database,
its backups and its administrators' reach.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction

from apps.audit.models import GENESIS_HASH, AuditChain, AuditCheckpoint, AuditEvent, ChainedRecord, ToolCall

# Each MACed message starts differently, so a MAC made for one kind can never pass for another:
# rows start with their 64-hex prev_hash, checkpoints and heads with these labels.
CHECKPOINT_LABEL = "mcpnest-audit-checkpoint"
HEAD_LABEL = "mcpnest-audit-head"
MIN_KEY_LENGTH = 32
# record_id look-ups per query when skipping replayed rows (a recorder batch is 1,000).
DEDUPE_CHUNK = 5000


# --- Keys ----------------------------------------------------------------------------


class UnknownAuditKey(Exception):
    """A row, checkpoint or head names a key id that is not in MCPNEST_AUDIT_KEYS."""


def key_id(key: str) -> str:
    """The short public id of a key, stored with everything it signs."""
    return hashlib.sha256(f"mcpnest-audit-key-id:{key}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    signing_key_id: str
    # One keyed HMAC state per key: each MAC is a cheap .copy() of it.
    macs: dict[str, hmac.HMAC]

    def mac(self, key_id: str, message: str) -> str:
        base = self.macs.get(key_id)
        if base is None:
            raise UnknownAuditKey(key_id)
        h = base.copy()
        # surrogatepass: a lone surrogate (which the writers clean away) must not make a MAC fail.
        h.update(message.encode("utf-8", "surrogatepass"))
        return h.hexdigest()


@cache
def _keyring(keys: tuple[str, ...], secret_key: str) -> Keyring:
    if not keys:
        # DEBUG only (settings refuse to start without MCPNEST_AUDIT_KEYS otherwise): a key
        # derived from the development SECRET_KEY, as apps.core.crypto does.
        keys = (hashlib.sha256(f"mcpnest-dev-audit-key:{secret_key}".encode()).hexdigest(),)
    for key in keys:
        if len(key) < MIN_KEY_LENGTH:
            raise ImproperlyConfigured(
                f"Every MCPNEST_AUDIT_KEYS entry must be at least {MIN_KEY_LENGTH} characters; make one with: "
                "python -c 'import secrets; print(secrets.token_hex(32))'"
            )
    macs = {key_id(key): hmac.new(key.encode(), digestmod=hashlib.sha256) for key in keys}
    return Keyring(signing_key_id=key_id(keys[0]), macs=macs)


def keyring() -> Keyring:
    return _keyring(tuple(settings.MCPNEST_AUDIT_KEYS), settings.SECRET_KEY)


# What every MAC covers is this encoding: never change it, or every signed row stops verifying.
# One encoder for all calls (json.dumps with these options would build a new one each time).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(values: dict) -> str:
    return _CANONICAL.encode(values)


def row_hash(prev_hash: str, record: ChainedRecord) -> str:
    """The MAC ``record`` should carry after ``prev_hash``, under the key its ``key_id`` names.

    Raises ``UnknownAuditKey`` if that key is not configured.
    """
    return keyring().mac(record.key_id, f"{prev_hash}\n{canonical(record.hashed_values())}")


def checkpoint_mac(checkpoint: AuditCheckpoint) -> str:
    """Raises ``UnknownAuditKey`` if the checkpoint's key is not configured."""
    return keyring().mac(checkpoint.key_id, f"{CHECKPOINT_LABEL}\n{canonical(checkpoint.signed_values())}")


def checkpoint_problem(checkpoint: AuditCheckpoint) -> str | None:
    """Why a checkpoint cannot be trusted, or None if its MAC verifies."""
    try:
        expected = checkpoint_mac(checkpoint)
    except UnknownAuditKey:
        return (
            f"forged retention checkpoint: signed with a key not in MCPNEST_AUDIT_KEYS "
            f"(key id {checkpoint.key_id or 'none'})"
        )
    if not hmac.compare_digest(expected, checkpoint.mac):
        return "forged retention checkpoint: its MAC does not verify"
    return None


def checkpoint_create(*, chain: AuditChain, seq: int, row_hash: str, deleted_rows: int) -> AuditCheckpoint:
    """Record (signed) that rows up to ``seq`` were deleted; call it with the chain head locked."""
    checkpoint = AuditCheckpoint(
        chain=chain, seq=seq, row_hash=row_hash, deleted_rows=deleted_rows, key_id=keyring().signing_key_id
    )
    checkpoint.mac = checkpoint_mac(checkpoint)
    checkpoint.save()
    return checkpoint


# --- Appending -----------------------------------------------------------------------


def _locked_chain(*, workspace_id: int | None, stream: str) -> AuditChain:
    """The chain head, locked until the surrounding transaction ends."""
    chains = AuditChain.objects.select_for_update()
    chain = chains.filter(workspace_id=workspace_id, stream=stream).first()
    if chain is not None:
        return chain
    try:
        with transaction.atomic():  # savepoint: a concurrent creator may win the race
            AuditChain.objects.create(workspace_id=workspace_id, stream=stream)
    except IntegrityError:
        pass
    return chains.get(workspace_id=workspace_id, stream=stream)


def _unseen(model: type[ChainedRecord], records: Sequence[ChainedRecord]) -> list[ChainedRecord]:
    """``records`` without those whose ``record_id`` is already written (or repeated in the batch)."""
    ids = [rid for record in records if (rid := getattr(record, "record_id", None))]
    if not ids:
        return list(records)
    seen: set[str] = set()
    for start in range(0, len(ids), DEDUPE_CHUNK):
        chunk = ids[start : start + DEDUPE_CHUNK]
        seen.update(model.objects.filter(record_id__in=chunk).values_list("record_id", flat=True))
    fresh = []
    for record in records:
        rid = getattr(record, "record_id", None)
        if rid:
            if rid in seen:
                continue
            seen.add(rid)
        fresh.append(record)
    return fresh


def append(records: Sequence[ChainedRecord]) -> list[ChainedRecord]:
    """Link ``records`` (all of one type and one workspace) to the end of their chain.

    One short transaction per batch: lock the head, skip records whose ``record_id`` is
    already written (one indexed query: a replay after a crash writes nothing twice),
    MAC, insert, move the head. On PostgreSQL the row lock serialises writers; on SQLite
    the IMMEDIATE transaction does. Returns the records written.
    """
    if not records:
        return []
    model = type(records[0])
    workspace_id = records[0].workspace_id
    for record in records:
        if type(record) is not model or record.workspace_id != workspace_id:
            raise ValueError("append() takes records of one type and one workspace at a time.")
    ring = keyring()
    signing_key_id = ring.signing_key_id
    base = ring.macs[signing_key_id]
    with transaction.atomic():
        chain = _locked_chain(workspace_id=workspace_id, stream=model.STREAM)
        fresh = _unseen(model, records)
        if not fresh:
            return []
        seq, prev = chain.last_seq, chain.last_hash
        for record in fresh:
            seq += 1
            record.chain = chain
            record.seq = seq
            record.prev_hash = prev
            record.key_id = signing_key_id
            mac = base.copy()
            mac.update(f"{prev}\n{canonical(record.hashed_values())}".encode("utf-8", "surrogatepass"))
            record.row_hash = prev = mac.hexdigest()
        model.objects.bulk_create(fresh)
        AuditChain.objects.filter(pk=chain.pk).update(last_seq=seq, last_hash=prev)
    return fresh


# ToolCall's columns but the auto id, in the order of the fast path's INSERT.
_CALL_COLUMNS = tuple(field for field in ToolCall._meta.concrete_fields if not field.primary_key)
_call_params = itemgetter(*(field.attname for field in _CALL_COLUMNS))


@cache
def _calls_sql(vendor: str) -> dict[str, str]:
    """The fast path's statements (``%s`` placeholders; table and column names are the models')."""
    quote = connection.ops.quote_name
    calls, chains = quote(ToolCall._meta.db_table), quote(AuditChain._meta.db_table)
    record_id = quote(ToolCall._meta.get_field("record_id").column)
    columns = ", ".join(quote(field.column) for field in _CALL_COLUMNS)
    # Only the models' table and column names are formatted in; every value is bound.
    head = f"SELECT id, last_seq, last_hash FROM {chains} WHERE stream = %s AND workspace_id"  # noqa: S608
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: IMMEDIATE
    placeholders = ", ".join(["%s"] * len(_CALL_COLUMNS))
    return {
        "head": f"{head} = %s{lock}",
        "global head": f"{head} IS NULL{lock}",
        "move head": f"UPDATE {chains} SET last_seq = %s, last_hash = %s WHERE id = %s",  # noqa: S608
        # PostgreSQL gets the ids as one array: Django's client-side binding of a thousand
        # placeholders costs the gateway more than the rest of the query (bench/audit_write.py).
        "seen": f"SELECT {record_id} FROM {calls} WHERE {record_id} IN "  # noqa: S608
        + ("(SELECT unnest(%s::varchar[]))" if vendor == "postgresql" else "({placeholders})"),
        # PostgreSQL takes a batch as one statement with one array per column: one parse, one
        # plan and one executor run instead of one per row (the server's CPU per row halves).
        # Each array is cast to its column's type without a length: an explicit cast to
        # varchar(n) would truncate silently, the INSERT's own assignment refuses too long a value.
        "insert": f"INSERT INTO {calls} ({columns}) "  # noqa: S608
        + (f"SELECT * FROM unnest({_array_casts()})" if vendor == "postgresql" else f"VALUES ({placeholders})"),  # noqa: S608
    }


def _array_casts() -> str:
    """``%b::bigint[], %b::varchar[], …``: one array parameter per column of the fast path's
    INSERT, sent in binary (``%b``: psycopg dumps a list to a binary array in C, with no text
    escaping; a third cheaper for the gateway than text)."""
    return ", ".join(f"%b::{field.db_type(connection).split('(')[0]}[]" for field in _CALL_COLUMNS)


def _locked_head(cursor, sql: dict[str, str], workspace_id: int | None) -> tuple[int, int, str]:
    """``_locked_chain`` without the model instance: (chain id, last seq, last hash)."""
    stream = AuditChain.Stream.CALLS.value
    if workspace_id is None:
        cursor.execute(sql["global head"], [stream])
    else:
        cursor.execute(sql["head"], [stream, workspace_id])
    row = cursor.fetchone()
    if row is None:  # the chain's first row: create the head (or lose the race), lock it
        chain = _locked_chain(workspace_id=workspace_id, stream=stream)
        row = (chain.pk, chain.last_seq, chain.last_hash)
    return row


def _unwritten_calls(cursor, sql: dict[str, str], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without those whose ``record_id`` is already written (or repeated in the batch)."""
    ids = [rid for row in rows if (rid := row["record_id"])]
    seen: set[str] = set()
    for start in range(0, len(ids), DEDUPE_CHUNK):
        chunk = ids[start : start + DEDUPE_CHUNK]
        if connection.vendor == "postgresql":
            cursor.execute(sql["seen"], [chunk])
        else:
            cursor.execute(sql["seen"].format(placeholders=", ".join(["%s"] * len(chunk))), chunk)
        seen.update(rid for (rid,) in cursor.fetchall())
    fresh = []
    for row in rows:
        rid = row["record_id"]
        if rid:
            if rid in seen:
                continue
            seen.add(rid)
        fresh.append(row)
    return fresh


def _insert_cursor():
    """A cursor for the INSERT: on PostgreSQL one that binds parameters on the server.

    Django's psycopg cursors bind on the client (each value quoted into the SQL text in
    Python): for a batch's column arrays the server-side binding of psycopg's own ``Cursor``
    (values dumped in C) costs the gateway half the CPU. It is wrapped like any Django
    cursor: execute wrappers, query logging and error translation.
    """
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def append_tool_calls(rows: Sequence[dict[str, Any]]) -> int:
    """``append`` for tool calls given as column values (``sanitize.tool_call_values``), all of
    one workspace; the number of rows written.

    The gateway's recorder writes every call through here, so it builds no model instances
    and no ORM queries: it MACs the values ``ToolCall.hashed_values()`` would give
    (``ToolCall.hashed_values_of`` the row) and inserts them in one statement (PostgreSQL: one
    array per column; SQLite: one ``executemany``), each value as the model field's
    ``get_db_prep_save`` would pass it. Same transaction, lock, replay check and errors as
    ``append``.
    """
    if not rows:
        return 0
    workspace_id = rows[0]["workspace_id"]
    if any(row["workspace_id"] != workspace_id for row in rows):
        raise ValueError("append_tool_calls() takes rows of one workspace at a time.")
    ring = keyring()
    signing_key_id = ring.signing_key_id
    base = ring.macs[signing_key_id]
    adapt_datetime = connection.ops.adapt_datetimefield_value
    sql = _calls_sql(connection.vendor)
    with transaction.atomic():
        with connection.cursor() as cursor:
            chain_id, seq, prev = _locked_head(cursor, sql, workspace_id)
            fresh = _unwritten_calls(cursor, sql, rows)
        if not fresh:
            return 0
        params = []
        for row in fresh:
            seq += 1
            hashed = ToolCall.hashed_values_of(row, chain_id=chain_id, seq=seq, key_id=signing_key_id)
            mac = base.copy()
            mac.update(f"{prev}\n{_CANONICAL.encode(hashed)}".encode("utf-8", "surrogatepass"))
            signed = mac.hexdigest()
            params.append(
                _call_params(
                    {
                        **row,
                        "chain_id": chain_id,
                        "seq": seq,
                        "prev_hash": prev,
                        "row_hash": signed,
                        "key_id": signing_key_id,
                        "created_at": adapt_datetime(row["created_at"]),
                    }
                )
            )
            prev = signed
        with _insert_cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(sql["insert"], [list(column) for column in zip(*params, strict=True)])
            else:
                cursor.executemany(sql["insert"], params)
        with connection.cursor() as cursor:
            cursor.execute(sql["move head"], [seq, prev, chain_id])
    return len(fresh)


def append_many(records: Iterable[ChainedRecord]) -> int:
    """Append records of mixed workspaces, one transaction per (type, workspace); the number written."""
    groups: dict[tuple[type, int | None], list[ChainedRecord]] = {}
    for record in records:
        groups.setdefault((type(record), record.workspace_id), []).append(record)
    return sum(len(append(batch)) for batch in groups.values())


# --- Verifying -----------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    chain: AuditChain
    seq: int
    record_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"row id={self.record_id}" if self.record_id is not None else "row"
        return f"{self.chain.get_stream_display()} chain broken at seq {self.seq} ({where}): {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    chain: AuditChain
    rows: int
    start_seq: int
    head_hash: str
    quarantined: int = 0  # rows with a quarantine note: not a break, but for a reviewer to see


def verify_chain(chain: AuditChain, model: type[ChainedRecord]) -> ChainReport | Break:
    """Walk one chain from its newest checkpoint (or the start) and recompute every MAC."""
    checkpoint = AuditCheckpoint.objects.filter(chain=chain).order_by("-seq").first()
    if checkpoint is not None:
        checkpoint.chain = chain
        problem = checkpoint_problem(checkpoint)
        if problem:
            return Break(chain, checkpoint.seq, None, problem)
    expected_seq = checkpoint.seq if checkpoint else 0
    prev = checkpoint.row_hash if checkpoint else GENESIS_HASH
    start = expected_seq
    rows = quarantined = 0
    macs = keyring().macs
    queryset = model.objects.filter(chain=chain).order_by("seq")
    for record in queryset.iterator(chunk_size=5000):
        expected_seq += 1
        if record.seq < expected_seq:
            # Rows before the checkpoint survive only if retention was undone behind our back.
            if checkpoint and record.seq <= checkpoint.seq:
                return Break(chain, record.seq, record.pk, "row older than the retention checkpoint")
            return Break(chain, record.seq, record.pk, "duplicate sequence number (row inserted)")
        if record.seq > expected_seq:
            return Break(chain, expected_seq, None, f"rows {expected_seq}–{record.seq - 1} are missing (deleted)")
        if record.prev_hash != prev:
            return Break(chain, record.seq, record.pk, "previous-hash link does not match (row inserted or replaced)")
        base = macs.get(record.key_id)
        if base is None:
            return Break(
                chain,
                record.seq,
                record.pk,
                f"signed with a key not in MCPNEST_AUDIT_KEYS (key id {record.key_id or 'none: an unkeyed row'})",
            )
        mac = base.copy()
        mac.update(f"{prev}\n{canonical(record.hashed_values())}".encode("utf-8", "surrogatepass"))
        computed = mac.hexdigest()
        if not hmac.compare_digest(computed, record.row_hash):
            return Break(chain, record.seq, record.pk, "contents do not match the row hash (row edited)")
        prev = computed
        rows += 1
        if getattr(record, "quarantine", ""):
            quarantined += 1
    if expected_seq < chain.last_seq:
        return Break(chain, expected_seq + 1, None, f"rows {expected_seq + 1}–{chain.last_seq} are missing (deleted)")
    if expected_seq > chain.last_seq or prev != chain.last_hash:
        return Break(
            chain, expected_seq, None, "chain head does not match the last row (rows appended outside MCPNest)"
        )
    return ChainReport(chain=chain, rows=rows, start_seq=start, head_hash=prev, quarantined=quarantined)


def model_for(stream: str) -> type[ChainedRecord]:
    return {AuditChain.Stream.EVENTS: AuditEvent, AuditChain.Stream.CALLS: ToolCall}[stream]


def iter_chains(workspace_id: int | None) -> Iterator[tuple[AuditChain, type[ChainedRecord]]]:
    for chain in AuditChain.objects.filter(workspace_id=workspace_id).order_by("stream"):
        yield chain, model_for(chain.stream)
