"""Appending to, and verifying, the audit hash chains."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from apps.audit.models import GENESIS_HASH, AuditChain, AuditCheckpoint, ChainedRecord


def canonical(values: dict) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(prev_hash: str, record: ChainedRecord) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical(record.hashed_values())}".encode()).hexdigest()


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


def append(records: Sequence[ChainedRecord]) -> None:
    """Link ``records`` (all of one type and one workspace) to the end of their chain.

    One short transaction per batch: lock the head, hash, insert, move the head. On
    PostgreSQL the row lock serialises writers; on SQLite the IMMEDIATE transaction does.
    """
    if not records:
        return
    model = type(records[0])
    workspace_id = records[0].workspace_id
    with transaction.atomic():
        chain = _locked_chain(workspace_id=workspace_id, stream=model.STREAM)
        seq, prev = chain.last_seq, chain.last_hash
        for record in records:
            if type(record) is not model or record.workspace_id != workspace_id:
                raise ValueError("append() takes records of one type and one workspace at a time.")
            seq += 1
            record.chain = chain
            record.seq = seq
            record.prev_hash = prev
            record.row_hash = prev = row_hash(prev, record)
        model.objects.bulk_create(records)
        AuditChain.objects.filter(pk=chain.pk).update(last_seq=seq, last_hash=prev)


def append_many(records: Iterable[ChainedRecord]) -> None:
    """Append records of mixed workspaces, one transaction per (type, workspace)."""
    groups: dict[tuple[type, int | None], list[ChainedRecord]] = {}
    for record in records:
        groups.setdefault((type(record), record.workspace_id), []).append(record)
    for batch in groups.values():
        append(batch)


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


def verify_chain(chain: AuditChain, model: type[ChainedRecord]) -> ChainReport | Break:
    """Walk one chain from its newest checkpoint (or the start) and recompute every hash."""
    checkpoint = AuditCheckpoint.objects.filter(chain=chain).order_by("-seq").first()
    expected_seq = checkpoint.seq if checkpoint else 0
    prev = checkpoint.row_hash if checkpoint else GENESIS_HASH
    start = expected_seq
    rows = 0
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
        computed = row_hash(prev, record)
        if computed != record.row_hash:
            return Break(chain, record.seq, record.pk, "contents do not match the row hash (row edited)")
        prev = computed
        rows += 1
    if expected_seq < chain.last_seq:
        return Break(chain, expected_seq + 1, None, f"rows {expected_seq + 1}–{chain.last_seq} are missing (deleted)")
    if expected_seq > chain.last_seq or prev != chain.last_hash:
        return Break(
            chain, expected_seq, None, "chain head does not match the last row (rows appended outside MCPNest)"
        )
    return ChainReport(chain=chain, rows=rows, start_seq=start, head_hash=prev)


def iter_chains(workspace_id: int | None) -> Iterator[tuple[AuditChain, type[ChainedRecord]]]:
    from apps.audit.models import AuditEvent, ToolCall

    by_stream = {AuditChain.Stream.EVENTS: AuditEvent, AuditChain.Stream.CALLS: ToolCall}
    for chain in AuditChain.objects.filter(workspace_id=workspace_id).order_by("stream"):
        yield chain, by_stream[chain.stream]
