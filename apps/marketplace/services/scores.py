"""Writes for the marketplace: each server's quality score (``apps.marketplace.scoring``),
computed from what the index and GitHub know of it and kept with its reasons."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from apps.configtools.scanner import server_findings
from apps.marketplace import scoring
from apps.marketplace.configs import launches
from apps.marketplace.models import Repository, Server, ServerVersion

CHUNK = 1000


class _Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = ""


# ``Server.tools``: tool names, or {name, description} objects (a tools/list answer's shape).
_TOOLS = TypeAdapter(list[str | _Tool])


def _tool_names(value: Any) -> tuple[str, ...]:
    try:
        tools = _TOOLS.validate_python(value or [])
    except ValidationError:
        return ()
    return tuple(tool if isinstance(tool, str) else tool.name for tool in tools)


def _facts(server: Server, document: dict[str, Any], readme: str = "") -> scoring.Facts:
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
        variable_names=tuple(var.name for var in variables),
        license=server.license,
        readme=readme,
        tool_names=_tool_names(server.tools),
        installs_week=server.installs_week,
        findings=tuple(
            (finding.rule, finding.severity)
            for finding in server_findings(document, tools=server.tools or None)
            if finding.rule != "deprecated-server"
        ),
    )


def _latest_documents(server_ids: list[int]) -> dict[int, dict]:
    documents: dict[int, dict] = {}
    latest = ServerVersion.objects.filter(server_id__in=server_ids).order_by(
        "server_id", "-is_latest", "-published_at", "-pk"
    )
    for server_id, document in latest.values_list("server_id", "document"):
        documents.setdefault(server_id, document)
    return documents


def scores_refresh(
    *, server_ids: Iterable[int] | None = None, documents: dict[int, dict] | None = None, now: datetime | None = None
) -> int:
    """Score servers again (all when ``server_ids`` is None) from their latest server.json
    (``documents``, by server id, when the caller has them at hand) and their repository's
    README (``Repository.readme``). A chunk of servers costs three reads and its updates,
    whatever its size."""
    now = now or timezone.now()
    servers = Server.objects.all() if server_ids is None else Server.objects.filter(pk__in=list(server_ids))
    ids = list(servers.order_by("pk").values_list("pk", flat=True))
    scored = 0
    for start in range(0, len(ids), CHUNK):
        chunk = list(Server.objects.filter(pk__in=ids[start : start + CHUNK]).defer("search_vector"))
        given = documents if documents is not None else _latest_documents([server.pk for server in chunk])
        keys = {server.repository_key for server in chunk if server.repository_key}
        readmes = dict(Repository.objects.filter(key__in=keys).exclude(readme="").values_list("key", "readme"))
        for server in chunk:
            facts = _facts(server, given.get(server.pk) or {}, readmes.get(server.repository_key, ""))
            result = scoring.score(facts, now=now)
            server.score, server.grade = result.points, result.grade
            server.score_reasons = [reason.as_dict() for reason in result.reasons]
        Server.objects.bulk_update(chunk, ["score", "grade", "score_reasons"], batch_size=500)
        scored += len(chunk)
    return scored
