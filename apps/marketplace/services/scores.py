"""Writes for the marketplace: each server's quality score (``apps.marketplace.scoring``),
computed from what the index and GitHub know of it and kept with its reasons."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.marketplace import scoring
from apps.marketplace.configs import launches
from apps.marketplace.models import Server, ServerVersion


def _facts(server: Server, document: dict[str, Any]) -> scoring.Facts:
    found = launches(document)
    variables = [var for launch in found[:1] for var in launch.all_variables()]
    return scoring.Facts(
        installable=bool(found),
        description=server.description,
        title=server.title,
        in_registry=server.source == Server.Source.REGISTRY,
        deprecated=server.status == Server.Status.DEPRECATED,
        archived=server.archived,
        stars=server.stars,
        last_commit_at=server.last_commit_at,
        variables=len(variables),
        variables_described=sum(1 for var in variables if var.description.strip()),
    )


def scores_refresh(
    *, server_ids: Iterable[int] | None = None, documents: dict[int, dict] | None = None, now: datetime | None = None
) -> int:
    """Score servers again (all when ``server_ids`` is None) from their latest server.json
    (``documents``, by server id, when the caller has them at hand)."""
    now = now or timezone.now()
    servers = Server.objects.all() if server_ids is None else Server.objects.filter(pk__in=list(server_ids))
    if documents is None:
        documents = {}
        latest = ServerVersion.objects.filter(server__in=servers).order_by(
            "server_id", "-is_latest", "-published_at", "-pk"
        )
        for server_id, document in latest.values_list("server_id", "document").iterator(chunk_size=1000):
            documents.setdefault(server_id, document)
    changed = []
    for server in servers.iterator(chunk_size=1000):
        result = scoring.score(_facts(server, documents.get(server.pk) or {}), now=now)
        server.score, server.grade = result.points, result.grade
        server.score_reasons = [reason.as_dict() for reason in result.reasons]
        changed.append(server)
    Server.objects.bulk_update(changed, ["score", "grade", "score_reasons"], batch_size=500)
    return len(changed)
