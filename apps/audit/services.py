"""Writes to the audit trail. Everything else calls these; nothing writes audit rows directly."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditChain, AuditCheckpoint, AuditEvent, ChainedRecord, ToolCall

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.workspaces.models import Workspace

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
    """Append one governance event. Call it inside the transaction of the change it records."""
    event = AuditEvent(
        workspace=workspace,
        actor=actor if actor is not None and actor.pk else None,
        actor_repr=(actor.email if actor is not None and actor.pk else "")[:254],
        action=Action(action).value,
        target_type=target_type,
        target_id=str(target_id)[:64] if target_id not in (None, "") else "",
        target_repr=str(target_repr)[:254],
        metadata=mask_secrets(metadata or {}),
        ip=_clean_ip(ip),
    )
    chain.append([event])
    return event


def tool_calls_record(calls: Iterable[dict[str, Any]]) -> int:
    """Append gateway call records in batches (one transaction per workspace).

    Each dict holds ToolCall field values (``workspace_id``, ``member_id``, ``tool_name``…).
    """
    records = []
    for values in calls:
        values = dict(values)
        values["client_ip"] = _clean_ip(values.get("client_ip"))
        records.append(ToolCall(**values))
    chain.append_many(records)
    return len(records)


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
            AuditCheckpoint.objects.create(
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
