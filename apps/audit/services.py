"""Writes to the audit trail. Everything else calls these; nothing writes audit rows directly.

Hostile input never costs a row (``tool_calls_record``): values are cleaned before they
are written (``apps.audit.sanitize``), a row the database still refuses is found by
splitting the batch and written as a quarantine row, and when the database itself does
not answer the caller gets ``AuditUnavailable`` and retries the same dicts later (rows
already committed are skipped by ``record_id``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from apps.audit import chain, heads, sanitize
from apps.audit.events import Action
from apps.audit.export import FORMATS, ExportKind, ExportVia
from apps.audit.models import AuditChain, AuditEvent, ChainedRecord, ToolCall
from apps.core import secrets

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.workspaces.models import Workspace

logger = logging.getLogger(__name__)

# Metadata keys whose values are never written, whatever a caller passes.
_SECRET_WORDS = ("token", "secret", "password", "key", "authorization", "header", "digest", "credential")


def _clean_ip(ip: str | None) -> str:
    if not ip:
        return ""
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return ""


def mask_secrets(metadata: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of any key that names a secret with "***"."""
    clean: dict[str, Any] = {}
    for key, value in metadata.items():
        # tokens_revoked is a count (member removal), not a token.
        if any(word in key.lower() for word in _SECRET_WORDS) and key not in (
            "token_prefix",
            "token_name",
            "tokens_revoked",
        ):
            clean[key] = "***"
        elif isinstance(value, dict):
            clean[key] = mask_secrets(value)
        else:
            clean[key] = value
    return clean


def audit_event_record(
    *,
    workspace: Workspace | None,
    actor: User | None,
    action: Action,
    target_type: str = "",
    target_id: Any = "",
    target_repr: str = "",
    metadata: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Append one governance event. Call it inside the transaction of the change it records.

    Text (names typed by users, upstream servers' answers) may hold anything: NUL and
    lone surrogates are cleaned from every string, metadata included (PostgreSQL refuses
    NUL in text and in jsonb), and each column is cut to its length.
    """

    def text(value: Any, max_length: int) -> str:
        return sanitize.clean_text(str(value), max_length)[0]

    event = AuditEvent(
        workspace=workspace,
        actor=actor if actor is not None and actor.pk else None,
        actor_repr=text(actor.email if actor is not None and actor.pk else "", 254),
        action=Action(action).value,
        target_type=text(target_type, 40),
        target_id=text(target_id, 64) if target_id not in (None, "") else "",
        target_repr=text(target_repr, 254),
        metadata=sanitize.clean_json(mask_secrets(metadata or {})),
        ip=_clean_ip(ip),
    )
    chain.append([event])
    return event


# A whole secret (mng_/mnk_/mni_ + 48 hex) typed into a filter or search box must not
# reach the trail through the export's own row.
_RAW_SECRET = re.compile(rf"\b[a-z]{{3}}_[0-9a-f]{{{secrets.SECRET_HEX_LENGTH}}}\b")


def _filter_value(value: Any) -> str | list[str]:
    if isinstance(value, list | tuple):
        return [_RAW_SECRET.sub("***", str(item)) for item in value]
    return _RAW_SECRET.sub("***", str(value))


def _given(value: Any) -> bool:
    """Whether a filter was set: an unset one is None, False (a checkbox) or empty."""
    return value is not None and value is not False and value not in ("", [], ())


def audit_export_begin(
    *,
    workspace: Workspace | None,
    actor: User | None,
    kind: ExportKind,
    fmt: str,
    filters: Mapping[str, Any],
    via: ExportVia,
    ip: str | None = None,
) -> AuditEvent:
    """Record that an export of the audit trail begins: every entry point writes this one row.

    Call it before the first exported row is produced, so that even an interrupted download
    is on record and an events export that reads up to the chain's head names itself.
    ``workspace`` is None only for an admin export across workspaces; ``actor`` is None only
    for an operator at the shell (``via=ExportVia.CLI``). ``filters`` are the ones the caller
    applied (empty values dropped); their values are written as text, with raw secrets
    masked.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Format must be one of: {', '.join(FORMATS)}.")
    used = {str(name): _filter_value(value) for name, value in filters.items() if _given(value)}
    return audit_event_record(
        workspace=workspace,
        actor=actor,
        action=Action.AUDIT_EXPORTED,
        target_type="workspace" if workspace is not None else "",
        target_id=workspace.pk if workspace is not None else "",
        target_repr=workspace.slug if workspace is not None else "all workspaces",
        metadata={"kind": ExportKind(kind).value, "format": fmt, "filters": used, "via": ExportVia(via).value},
        ip=ip,
    )


class AuditUnavailable(Exception):
    """The database did not take the rows: it is down, or locked, or timed out.

    Nothing of the failing workspace's batch was written (other workspaces' batches in the
    same call may have been). Call ``tool_calls_record`` again later with the same dicts:
    rows already written are skipped by their ``record_id``.
    """


# Errors about the database, not about a row: connection lost, locked, timed out,
# deadlocked. Splitting the batch would only quarantine good rows, so the caller retries.
_UNAVAILABLE = (OperationalError, InterfaceError)


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # any failure means "not answering"
        return False
    return True


def _write_isolating(pairs: Sequence[tuple[dict[str, Any], Any]]) -> int:
    """Append ``pairs`` (the column values of rows of one workspace, with the dicts they came from).

    If the database refuses the batch but still answers, the batch is split in halves
    until the refused row is alone; it is then written as a quarantine row instead. So
    one bad row costs ~2·log2(n) extra short transactions, never the other rows.
    """
    rows = [row for row, _ in pairs]
    try:
        return chain.append_tool_calls(rows)
    except _UNAVAILABLE as exc:
        raise AuditUnavailable(f"the audit database did not take {len(rows)} tool calls: {exc}") from exc
    except Exception as exc:  # a refused row: DataError, IntegrityError, ValueError…
        if not _database_answers():
            raise AuditUnavailable(f"the audit database did not take {len(rows)} tool calls: {exc}") from exc
        failure = exc
    if len(pairs) > 1:
        middle = len(pairs) // 2
        return _write_isolating(pairs[:middle]) + _write_isolating(pairs[middle:])
    row, values = pairs[0]
    reason = f"the database refused the row: {type(failure).__name__}: {failure}"
    try:
        if row["record_id"] and ToolCall.objects.filter(record_id=row["record_id"]).exists():
            return 0  # a concurrent replay wrote it first
        logger.warning("quarantining a tool call: %s", reason)
        return chain.append_tool_calls([sanitize.quarantine_values(values, reason)])
    except _UNAVAILABLE as exc:
        raise AuditUnavailable(f"the audit database did not take a quarantine row: {exc}") from exc


def tool_calls_record(calls: Iterable[Mapping[str, Any]]) -> int:
    """Append gateway call records, one transaction per workspace; the number of rows written.

    Each dict holds ToolCall field values (``workspace_id``, ``member_id``, ``tool_name``…),
    ``record_id`` (32 lowercase hex, the gateway's id for the call) and ``created_at``
    (a datetime or an ISO 8601 string; naive means UTC). Guarantees:

    * every dict becomes a row: values are cleaned and bounded first, and a dict that
      cannot be a ToolCall, or that the database refuses anyway, becomes a quarantine row
      in the same chain (``apps.audit.sanitize`` documents both); the chain stays whole;
    * idempotent: a dict whose ``record_id`` is already written is skipped, checked under
      the chain-head lock (``chain.append_tool_calls``), so a replayed spool writes nothing twice;
    * raises ``AuditUnavailable`` (from the ``OperationalError`` / ``InterfaceError``)
      when the database is down, locked or timed out, or stops answering while a refused
      row is being isolated. Nothing is lost: call again later with the same dicts.
    """
    groups: dict[int | None, list[tuple[dict[str, Any], Any]]] = {}
    for values in calls:
        row = sanitize.tool_call_values(values)
        groups.setdefault(row["workspace_id"], []).append((row, values))
    return sum(_write_isolating(pairs) for pairs in groups.values())


def _retention_delete(model: type[ChainedRecord], chain_obj: AuditChain, up_to_seq: int) -> int:
    # The one sanctioned removal of audit rows: a direct DELETE that bypasses the
    # append-only queryset, always paired with a checkpoint in the same transaction.
    queryset = model.objects.filter(chain=chain_obj, seq__lte=up_to_seq)
    return queryset._raw_delete(queryset.db)


def retention_apply(*, workspace: Workspace, now=None) -> int:
    """Delete this workspace's audit rows older than its retention, leaving checkpoints."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=workspace.audit_retention_days)
    deleted_total = 0
    for chain_obj, model in chain.iter_chains(workspace.pk):
        with transaction.atomic():
            locked = AuditChain.objects.select_for_update().get(pk=chain_obj.pk)
            last_old = (
                model.objects.filter(chain=locked, created_at__lt=cutoff)
                .order_by("-seq")
                .values("seq", "row_hash")
                .first()
            )
            if last_old is None:
                continue
            deleted = _retention_delete(model, locked, last_old["seq"])
            chain.checkpoint_create(
                chain=locked, seq=last_old["seq"], row_hash=last_old["row_hash"], deleted_rows=deleted
            )
            deleted_total += deleted
    if deleted_total:
        audit_event_record(
            workspace=workspace,
            actor=None,
            action=Action.AUDIT_RETENTION_APPLIED,
            target_type="workspace",
            target_id=workspace.pk,
            target_repr=workspace.slug,
            metadata={"deleted_rows": deleted_total, "retention_days": workspace.audit_retention_days},
        )
    return deleted_total


def audit_heads_export(*, sink: str | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Write every chain's signed head to ``sink`` (default ``MCPNEST_AUDIT_HEAD_EXPORT``).

    ``"log"``: one INFO line per head on the ``mcpnest.audit.heads`` logger (for a log
    shipper); anything else is a file path the JSON lines are appended to. Keep the
    heads where the database's administrators cannot write: ``audit_verify --heads``
    then detects rows cut off the end of a chain with its head rolled back.
    """
    sink = sink or settings.MCPNEST_AUDIT_HEAD_EXPORT
    lines = heads.signed_heads(now=now)
    text = [heads.dumps(line) for line in lines]
    if sink == "log":
        head_logger = logging.getLogger(heads.LOGGER)
        if head_logger.level == logging.NOTSET:
            head_logger.setLevel(logging.INFO)  # evidence, not chatter: not silenced by LOG_LEVEL
        for line in text:
            head_logger.info(line)
    elif text:
        data = "".join(f"{line}\n" for line in text).encode()
        fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    return lines
