"""Reads for the portal's Security tab: the live tool list, allowlists, each server's tools,
what waits for approval and pin diffs."""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.db.models import QuerySet

from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
from apps.gateway.snapshots import one_off_pool, workspace_config
from relay import catalog as catalogs
from relay.catalog import Catalog
from relay.config import WorkspaceConfig

if TYPE_CHECKING:
    from apps.workspaces.models import Workspace

logger = logging.getLogger(__name__)

# The page waits at most this long for the upstreams (each listing has its own, shorter limit).
LIVE_TOOLS_TIMEOUT = 8.0


@dataclass
class ServerTools:
    """One server's tools for the allowlist picker."""

    slug: str
    tools: list[str] = field(default_factory=list)
    withheld: set[str] = field(default_factory=set)  # offered upstream, waiting for pin approval
    live: bool = True  # False: the upstream did not answer, the names come from its pins
    note: str = ""


async def _build(config: WorkspaceConfig) -> Catalog:
    async with one_off_pool() as pool, asyncio.timeout(LIVE_TOOLS_TIMEOUT):
        return await catalogs.build(config, pool)


def live_tools(workspace: Workspace) -> list[ServerTools]:
    """Every approved server's tools, asked of the upstreams right now.

    A server whose upstream is disabled, down or slow is listed with the tool names it has
    pins for instead, and a note saying so; the page never fails because of an upstream.
    """
    approved = list(
        UpstreamServer.objects.filter(workspace=workspace, status=UpstreamServer.Status.APPROVED).order_by(
            "position", "slug"
        )
    )
    if not approved:
        return []
    config = workspace_config(workspace.slug)
    failures: dict[str, str] = {}
    live: dict[str, ServerTools] = {}
    if config is not None and config.servers:
        try:
            # A loop of our own (even under ASGI): the gateway's pooled connections are left alone.
            built = async_to_sync(_build, force_new_loop=True)(config)
        except TimeoutError:
            failures = {server.slug: "did not answer in time" for server in config.servers}
        except Exception:
            # An upstream answering outside the protocol must not take the page down with it.
            logger.exception("Listing the tools of workspace %s failed", workspace.slug)
            failures = {server.slug: "the listing failed" for server in config.servers}
        else:
            failures = dict(built.failures)
            for entry in built.tools.values():
                tools = live.setdefault(entry.server.slug, ServerTools(entry.server.slug))
                tools.tools.append(entry.upstream_name)
                if entry.withheld:
                    tools.withheld.add(entry.upstream_name)
    pinned: dict[int, list[str]] = {}
    for server_id, name in ToolPin.objects.filter(server__in=approved).values_list("server_id", "tool_name"):
        pinned.setdefault(server_id, []).append(name)
    result = []
    for server in approved:
        if server.is_live and server.slug not in failures:
            tools = live.get(server.slug, ServerTools(server.slug))
            tools.tools.sort()
            result.append(tools)
            continue
        why = "disabled" if not server.enabled else f"unreachable now ({failures.get(server.slug, 'no answer')})"
        result.append(
            ServerTools(
                server.slug,
                tools=sorted(pinned.get(server.pk, [])),
                live=False,
                note=f"Server {why}: showing the tools approved for it earlier.",
            )
        )
    return result


def servers_in_order(*, workspace: Workspace) -> QuerySet[UpstreamServer]:
    """The workspace's upstream servers in the order the gateway asks them."""
    return UpstreamServer.objects.filter(workspace=workspace).order_by("position", "slug")


def known_tools(servers: list[UpstreamServer]) -> dict[str, set[str]]:
    """The tool names each server is known to offer (every tool the gateway has seen has a pin), by slug."""
    known: dict[str, set[str]] = {server.slug: set() for server in servers}
    slugs = {server.pk: server.slug for server in servers}
    for server_id, name in ToolPin.objects.filter(server__in=servers).values_list("server_id", "tool_name"):
        known[slugs[server_id]].add(name)
    return known


def allowlists(workspace: Workspace) -> dict[int, list[str]]:
    """Each member's rules as ``server:tool`` strings, by user id."""
    rules: dict[int, list[str]] = {}
    for user_id, server_slug, tool in (
        AllowRule.objects.filter(workspace=workspace)
        .order_by("server_slug", "tool")
        .values_list("user_id", "server_slug", "tool")
    ):
        rules.setdefault(user_id, []).append(f"{server_slug}:{tool}")
    return rules


def pending_pins(workspace: Workspace) -> list[ToolPin]:
    """Tool definitions waiting for an Owner or Admin (not the rejected ones)."""
    return list(
        ToolPin.objects.filter(server__workspace=workspace, rejected_at__isnull=True)
        .exclude(pending_fingerprint="")
        .select_related("server")
        .order_by("server__position", "server__slug", "tool_name")
    )


# The navigation badge says "99+" past this: counting stops there.
WAITING_CAP = 100


def approvals_waiting(workspace: Workspace, *, servers: bool = True, pins: bool = True) -> int:
    """How many server requests (``servers``) and tool definitions (``pins``) wait for a decision.

    One query, no COUNT: at most WAITING_CAP ids are read.
    """
    parts = []
    if servers:
        parts.append(
            UpstreamServer.objects.filter(workspace=workspace, status=UpstreamServer.Status.REQUESTED)
            .order_by()
            .values_list("pk", flat=True)
        )
    if pins:
        parts.append(
            ToolPin.objects.filter(server__workspace=workspace, rejected_at__isnull=True)
            .exclude(pending_fingerprint="")
            .order_by()
            .values_list("pk", flat=True)
        )
    if not parts:
        return 0
    first, *others = parts
    return len(first.union(*others, all=True)[:WAITING_CAP] if others else first[:WAITING_CAP])


@dataclass(frozen=True)
class ToolRow:
    """One tool of a server as the Security tab shows it."""

    name: str
    description: str
    input_schema: str  # pretty-printed JSON ("" when the tool declares none)
    state: str  # a ToolPin.State value, or "offered" (a requested server's listing)
    state_label: str


def _tool_row(definition: Any, name: str, state: str, label: str) -> ToolRow:
    definition = definition if isinstance(definition, dict) else {}
    description = definition.get("description")
    schema = definition.get("inputSchema")
    return ToolRow(
        name=name,
        description=description if isinstance(description, str) else "",
        input_schema=json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) if schema else "",
        state=state,
        state_label=label,
    )


def server_tools(server: UpstreamServer) -> list[ToolRow]:
    """The tools of ``server`` with their pinned definitions, or for a requested server the
    ones its last check listed. Reads ``server.pins.all()``: prefetch ``pins`` for a list."""
    if server.status == UpstreamServer.Status.REQUESTED:
        offered = server.offered_tools or []
        rows = [_tool_row(tool, tool["name"], "offered", "Offered") for tool in offered if isinstance(tool, dict)]
        return sorted(rows, key=lambda row: row.name)
    return [
        _tool_row(pin.shown_definition, pin.tool_name, pin.state, ToolPin.State(pin.state).label)
        for pin in sorted(server.pins.all(), key=lambda pin: pin.tool_name)
    ]


def _pretty(definition: Any) -> list[str]:
    if not definition:
        return []
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def pin_diff(pin: ToolPin) -> list[tuple[str, str]]:
    """The approved definition against the pending one, as (kind, line) pairs.

    ``kind`` is "add", "del", "hunk" or "ctx". The lines are plain text: templates escape them.
    """
    lines = difflib.unified_diff(_pretty(pin.definition), _pretty(pin.pending_definition), n=3, lineterm="")
    diff = []
    for line in itertools.islice(lines, 2, None):  # past the "---"/"+++" file header
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        diff.append((kind, line))
    return diff
