"""Streaming export of audit rows as CSV or JSON Lines, with their chain hashes.

Used by the admin, the REST API and ``manage.py audit_export``: rows are read with
``.iterator()`` and written one at a time, never built in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC

from django.db.models import QuerySet

from apps.audit.models import AuditEvent, ChainedRecord, ToolCall

FORMATS = ("jsonl", "csv")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}

_CHAIN_COLUMNS = ["id", "chain", "seq", "prev_hash", "row_hash", "workspace", "created_at"]
COLUMNS: dict[type[ChainedRecord], list[str]] = {
    AuditEvent: [*_CHAIN_COLUMNS, *AuditEvent.HASHED_FIELDS],
    ToolCall: [*_CHAIN_COLUMNS, *ToolCall.HASHED_FIELDS],
}


def record_dict(record: ChainedRecord) -> dict:
    """One row as exported: exactly the values the row hash was computed over, plus ids."""
    values = record.hashed_values()
    values.update(
        id=record.pk,
        type="event" if isinstance(record, AuditEvent) else "call",
        prev_hash=record.prev_hash,
        row_hash=record.row_hash,
    )
    return values


def _rows(queryset: QuerySet) -> Iterator[ChainedRecord]:
    return queryset.iterator(chunk_size=2000)


def stream(queryset: QuerySet, fmt: str) -> Iterable[str]:
    if fmt not in FORMATS:
        raise ValueError(f"Format must be one of: {', '.join(FORMATS)}.")
    columns = COLUMNS[queryset.model]
    if fmt == "jsonl":
        for record in _rows(queryset):
            yield json.dumps(record_dict(record), sort_keys=True, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return text

    writer.writerow(columns)
    yield flush()
    for record in _rows(queryset):
        values = record_dict(record)
        writer.writerow(
            [json.dumps(values[c], sort_keys=True) if isinstance(values[c], dict) else values[c] for c in columns]
        )
        yield flush()


def filename(model: type[ChainedRecord], fmt: str, label: str) -> str:
    from django.utils import timezone

    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    kind = "events" if model is AuditEvent else "tool-calls"
    return f"mcpnest-{label}-{kind}-{stamp}.{fmt}"
