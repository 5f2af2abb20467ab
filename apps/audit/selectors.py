"""Reads of the audit trail: filtered lists, the chain head an export stops at, findings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from apps.audit.models import AuditChain, ChainedRecord, ToolCall

if TYPE_CHECKING:
    from apps.workspaces.models import Workspace


def records_newest_first(
    *, workspace: Workspace, model: type[ChainedRecord], lookups: dict[str, Any]
) -> QuerySet[ChainedRecord]:
    """The workspace's ``model`` rows matching ``lookups``, newest first (the indexed order)."""
    return model.objects.filter(workspace=workspace, **lookups).order_by("-created_at", "-id")


def chain_head_seq(*, workspace: Workspace, model: type[ChainedRecord]) -> int:
    """The sequence number of the newest ``model`` row of the workspace's chain (0: none yet)."""
    head = AuditChain.objects.filter(workspace=workspace, stream=model.STREAM).values_list("last_seq", flat=True)
    return head.first() or 0


def export_rows(
    *, workspace: Workspace, model: type[ChainedRecord], lookups: dict[str, Any], up_to_seq: int
) -> QuerySet[ChainedRecord]:
    """The rows an export streams: up to ``up_to_seq`` (a consistent snapshot however long the
    download takes) and in chain order, so consecutive rows link up for offline verification."""
    return model.objects.filter(workspace=workspace, seq__lte=up_to_seq, **lookups).order_by("seq")


def shadow_findings(*, workspace: Workspace, limit: int) -> list[ToolCall]:
    """The newest calls that shadow mode would have blocked."""
    calls = ToolCall.objects.filter(workspace=workspace, shadow_blocked=True).order_by("-created_at", "-id")
    return list(calls[:limit])
