"""Streaming export of audit rows as CSV or JSON Lines, with their chain hashes.

Used by the portal, the admin, the REST API and ``manage.py audit_export``: rows are read
with ``.iterator()`` and written one at a time, never built in memory. Each of them first
records the export through ``apps.audit.services.audit_export_begin``.

Each exported row holds exactly the values its MAC covers (``key_id`` included), so an
auditor who is given the audit key can recompute every ``row_hash`` offline:
HMAC-SHA256(key, prev_hash + "\n" + canonical JSON of the row without id, type,
prev_hash and row_hash). Without the key they can still check the links.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC
from enum import StrEnum

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from apps.audit.models import AuditEvent, ChainedRecord, ToolCall

FORMATS = ("jsonl", "csv")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


class ExportKind(StrEnum):
    """What an export holds: one kind of row, or (``manage.py audit_export``) both."""

    EVENTS = "events"
    TOOL_CALLS = "tool-calls"
    ALL = "all"

    @classmethod
    def of(cls, model: type[ChainedRecord]) -> ExportKind:
        return cls.EVENTS if model is AuditEvent else cls.TOOL_CALLS


class ExportVia(StrEnum):
    """Where an export was asked for, as its audit row says."""

    PORTAL = "portal"
    API = "api"
    ADMIN = "admin"
    CLI = "cli"


_CHAIN_COLUMNS = ["id", "chain", "seq", "prev_hash", "row_hash", "key_id", "workspace", "created_at"]
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
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"mcpnest-{label}-{ExportKind.of(model)}-{stamp}.{fmt}"


class ExportResponse(StreamingHttpResponse):
    """A download of ``stream(queryset, fmt)`` that really streams, under WSGI and ASGI alike.

    Under ASGI Django would read a synchronous iterator whole into memory before
    sending a byte. Here the rows are pulled a batch at a time in the thread-sensitive
    executor, where the view's database connection (and the query's cursor) lives.
    """

    BATCH = 500

    def __init__(self, queryset: QuerySet, fmt: str, *, label: str):
        super().__init__(stream(queryset, fmt), content_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8")
        self["Content-Disposition"] = f'attachment; filename="{filename(queryset.model, fmt, label)}"'

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parts = iter(self.streaming_content)
        take = sync_to_async(lambda: list(itertools.islice(parts, self.BATCH)), thread_sensitive=True)
        while batch := await take():
            for part in batch:
                yield part
