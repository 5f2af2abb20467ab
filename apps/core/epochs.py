"""Moving and reading invalidation epochs (see ``apps.core.models.Epoch``).

Writers call ``epoch_bump`` inside the transaction of their change. Readers (the gateway's
snapshot caches) call ``epochs_changed_since`` about twice a second: one indexed query
that returns only the scopes changed recently, so its cost does not grow with the number
of workspaces or tokens.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.core.models import Epoch

TOKENS = "tokens"
# How far back a reader looks: longer than any transaction that bumps an epoch takes to
# commit (changed_at is written before the commit), so no change slips between polls.
OVERLAP = timedelta(seconds=120)


def workspace_scope(workspace_id: int) -> str:
    return f"ws:{workspace_id}"


def epoch_bump(scope: str) -> None:
    """Move ``scope``'s epoch as part of the current transaction."""
    now = timezone.now()
    if Epoch.objects.filter(scope=scope).update(version=F("version") + 1, changed_at=now):
        return
    try:
        with transaction.atomic():  # savepoint: a concurrent writer may create it first
            Epoch.objects.create(scope=scope, version=1, changed_at=now)
    except IntegrityError:
        Epoch.objects.filter(scope=scope).update(version=F("version") + 1, changed_at=now)


def workspace_changed(workspace_id: int) -> None:
    """Gateway processes reload this workspace's configuration (within a second of the commit)."""
    epoch_bump(workspace_scope(workspace_id))


def tokens_changed() -> None:
    """Gateway processes drop their token caches (within a second of the commit)."""
    epoch_bump(TOKENS)


def epochs_changed_since(since: datetime) -> dict[str, int]:
    """Scopes whose epoch moved at or after ``since`` (minus the overlap), with their versions."""
    return dict(Epoch.objects.filter(changed_at__gte=since - OVERLAP).values_list("scope", "version"))
