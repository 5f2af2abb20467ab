"""The aggregated catalog of a workspace: every live upstream's tools, resources and prompts,
namespaced deterministically and checked against the approved tool pins."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from relay.config import ServerEntry, WorkspaceConfig
from relay.upstream import UpstreamError, UpstreamPool

logger = logging.getLogger(__name__)

CATALOG_TTL = 30.0
LIST_TIMEOUT = 5.0
NAMESPACE_SEPARATOR = "__"


def fingerprint(tool: dict[str, Any]) -> str:
    """What a pin approves: the tool's name, description and input schema."""
    material = {
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One aggregated item: what the client sees, and where it really lives."""

    exposed: str
    server: ServerEntry
    upstream_name: str
    definition: dict[str, Any]
    withheld: str = ""  # why a tool is not offered ("changed" / "unapproved"), or ""


@dataclass
class Catalog:
    tools: dict[str, Entry] = field(default_factory=dict)
    prompts: dict[str, Entry] = field(default_factory=dict)
    resources: dict[str, Entry] = field(default_factory=dict)  # by URI
    templates: list[Entry] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # server slug -> what went wrong
    changed_pins: list[tuple[ServerEntry, str, dict[str, Any], str]] = field(default_factory=list)
    built_at: float = field(default_factory=time.monotonic)


def _names(server_items: list[tuple[ServerEntry, list[dict]]], key: str) -> dict[tuple[int, str], str]:
    """Exposed names: the server's prefix if it has one; else the bare name unless it collides."""
    bare = Counter(
        item.get(key)
        for server, items in server_items
        if not server.prefix
        for item in items
        if isinstance(item.get(key), str)
    )
    names = {}
    for server, items in server_items:
        for item in items:
            name = item.get(key)
            if not isinstance(name, str):
                continue
            if server.prefix:
                exposed = f"{server.prefix}{name}"
            elif bare[name] > 1:
                exposed = f"{server.slug}{NAMESPACE_SEPARATOR}{name}"
            else:
                exposed = name
            names[(server.id, name)] = exposed
    return names


async def _fetch(pool: UpstreamPool, server: ServerEntry, method: str, key: str) -> list[dict] | Exception:
    upstream = pool.get(server.upstream)
    try:
        await upstream.ensure_connected(LIST_TIMEOUT)
        capability = {
            "tools/list": "tools",
            "prompts/list": "prompts",
            "resources/list": "resources",
            "resources/templates/list": "resources",
        }[method]
        if capability not in upstream.capabilities:
            return []
        return await asyncio.wait_for(upstream.list_all(method, key, timeout=LIST_TIMEOUT), LIST_TIMEOUT)
    except (UpstreamError, TimeoutError) as exc:
        return exc
    except Exception as exc:
        # Whatever went wrong with this upstream, the others' tools are still listed.
        logger.exception("listing %s of upstream %s failed", method, server.slug)
        return UpstreamError(f"upstream {server.slug} {method} failed ({type(exc).__name__})")


async def build(config: WorkspaceConfig, pool: UpstreamPool) -> Catalog:
    """Fan out to every live upstream in parallel; a slow or dead one fails alone."""
    catalog = Catalog()
    plan = [
        ("tools/list", "tools"),
        ("prompts/list", "prompts"),
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
    ]
    jobs = [_fetch(pool, server, method, key) for server in config.servers for method, key in plan]
    results = await asyncio.gather(*jobs)
    per_method: dict[str, list[tuple[ServerEntry, list[dict]]]] = {method: [] for method, _ in plan}
    for index, result in enumerate(results):
        server = config.servers[index // len(plan)]
        method = plan[index % len(plan)][0]
        if isinstance(result, Exception):
            catalog.failures.setdefault(server.slug, str(result) or type(result).__name__)
            continue
        per_method[method].append((server, result))

    tool_names = _names(per_method["tools/list"], "name")
    for server, items in per_method["tools/list"]:
        for tool in items:
            name = tool.get("name")
            if not isinstance(name, str):
                continue
            pin = config.pins.get((server.id, name))
            current = fingerprint(tool)
            withheld = ""
            if pin is None:
                withheld = "unapproved"
                catalog.changed_pins.append((server, name, tool, current))
            elif pin.fingerprint != current:
                withheld = "changed"
                if pin.pending_fingerprint != current:
                    catalog.changed_pins.append((server, name, tool, current))
            exposed = tool_names[(server.id, name)]
            definition = {**tool, "name": exposed}
            catalog.tools[exposed] = Entry(exposed, server, name, definition, withheld)

    prompt_names = _names(per_method["prompts/list"], "name")
    for server, items in per_method["prompts/list"]:
        for prompt in items:
            name = prompt.get("name")
            if isinstance(name, str):
                exposed = prompt_names[(server.id, name)]
                catalog.prompts[exposed] = Entry(exposed, server, name, {**prompt, "name": exposed})

    # Resources keep their URIs (they are addresses, not names); the first server wins a clash.
    for server, items in per_method["resources/list"]:
        for resource in items:
            uri = resource.get("uri")
            if isinstance(uri, str) and uri not in catalog.resources:
                catalog.resources[uri] = Entry(uri, server, uri, resource)
    for server, items in per_method["resources/templates/list"]:
        for template in items:
            if isinstance(template.get("uriTemplate"), str):
                catalog.templates.append(Entry(template["uriTemplate"], server, template["uriTemplate"], template))
    return catalog


def server_for_uri(catalog: Catalog, uri: str) -> ServerEntry | None:
    entry = catalog.resources.get(uri)
    if entry is not None:
        return entry.server
    best: tuple[int, ServerEntry] | None = None
    for template in catalog.templates:
        fixed = template.exposed.split("{", 1)[0]
        if fixed and uri.startswith(fixed) and (best is None or len(fixed) > best[0]):
            best = (len(fixed), template.server)
    return best[1] if best else None
