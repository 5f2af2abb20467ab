"""What the relay is told: its settings, the snapshots its host gives it, and the hooks it
calls back. Plain frozen dataclasses and enums; no Django, no I/O."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class Era(StrEnum):
    """Which generation of the MCP transport a peer speaks."""

    LEGACY = "legacy"  # 2025-03-26 … 2025-11-25: initialize, Mcp-Session-Id, GET stream
    MODERN = "modern"  # 2026-07-28: stateless requests carrying _meta and routing headers
    SSE = "sse"  # 2024-11-05 HTTP+SSE: one GET stream, POSTs to the endpoint it names


class Enforcement(StrEnum):
    """How a workspace applies its members' allowlists (``Workspace.enforcement``)."""

    OFF = "off"
    SHADOW = "shadow"  # calls pass; would-be blocks are recorded
    ENFORCE = "enforce"


class WhenDatabaseDown(StrEnum):
    SERVE = "serve"  # serve from the snapshots; the spool keeps the audit rows
    REFUSE = "refuse"  # 503 until the database answers


@dataclass(frozen=True)
class Settings:
    """The relay's limits. The Django host builds them from MCPNEST_* settings
    (``apps.gateway.host.relay_settings``); the bridge from its environment."""

    max_response_bytes: int = 10 * 1024 * 1024
    upstream_timeout: float = 60.0
    upstream_concurrency: int = 32
    workspace_concurrency: int = 64
    queue_seconds: float = 5.0
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: int = 1024 * 1024 * 1024
    redis_url: str = ""
    when_database_down: WhenDatabaseDown = WhenDatabaseDown.SERVE
    preauth_rate_limit: int = 600
    session_secret: bytes = b""  # seals Mcp-Session-Id values (and ids of relayed requests)
    # Where clients reach the gateway (scheme://host[:port]): the 401 answer points at
    # <public_url>/.well-known/oauth-protected-resource/api/gw/<slug> (RFC 9728).
    public_url: str = ""


@dataclass(frozen=True)
class UpstreamConfig:
    """How to reach one upstream server, and how much of the gateway one caller's call may use.

    ``timeout_seconds`` and ``max_concurrency`` are the server's own settings; None means
    the gateway's defaults (``Settings.upstream_timeout`` / ``upstream_concurrency``).
    """

    server_id: int
    slug: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float | None = None
    max_concurrency: int | None = None

    @property
    def key(self) -> tuple:
        # What identifies the connection: a new timeout or limit reuses the session.
        return (self.server_id, self.url, self.headers)


@dataclass(frozen=True)
class TokenInfo:
    """A live bearer credential: a ``mng_`` gateway token, or an OAuth access token.

    ``id`` identifies the credential for session binding and use tracking: a gateway
    token's id, or for OAuth the (client, member, workspace) connection, which outlives
    each rotated access token. ``scopes`` is None for gateway tokens (they carry no scope);
    an OAuth token carries the scopes it was granted and ``oauth_client``, its client id.
    """

    id: int | str
    workspace_id: int
    kind: str  # "member" | "workspace"
    user_id: int | None
    email: str
    prefix: str
    expires_at: datetime | None
    last_used_at: datetime | None
    scopes: frozenset[str] | None = None
    oauth_client: str = ""

    @property
    def is_workspace_token(self) -> bool:
        return self.kind == "workspace"


@dataclass(frozen=True)
class ServerEntry:
    id: int
    slug: str
    prefix: str
    position: int
    upstream: UpstreamConfig


@dataclass(frozen=True)
class Pin:
    fingerprint: str
    pending_fingerprint: str


@dataclass(frozen=True)
class WorkspaceConfig:
    id: int
    slug: str
    name: str
    enforcement: Enforcement
    deny_by_default: bool
    rate_limit_per_minute: int
    servers: tuple[ServerEntry, ...]
    rules: dict[int, frozenset[tuple[str, str]]]  # member user id -> {(server slug, tool or "*")}
    pins: dict[tuple[int, str], Pin]  # (server id, upstream tool name) -> pin
    member_ids: frozenset[int]
    loaded_at: float = field(default_factory=time.monotonic)


# Invalidation scopes (``Hooks.read_changes``): every token, or one workspace.
TOKENS_SCOPE = "tokens"


def workspace_scope(workspace_id: int) -> str:
    return f"ws:{workspace_id}"


@dataclass(frozen=True)
class Hooks:
    """What the relay asks of its host. Every hook is a plain blocking callable: the relay
        runs them in worker threads, never on its event loop, and survives them raising (a
        database outage) by serving what it has and retrying.

        * ``load_token(digest)``: the live token whose SHA-256 hex digest this is, or None
          (revoked, expired, its member deactivated or removed).
        * ``load_workspace(slug)``: the active workspace's configuration, or None.
        * ``read_changes(since)``: ``(read_at, {scope: version})`` for the invalidation scopes
          that moved at or after ``since`` (None: now). A scope is ``TOKENS_SCOPE`` or
          ``workspace_scope(id)``; the host moves it in the transaction of the change.
        * ``record_calls(rows)``: put audit rows (dicts, see ``engine.Relay._record``) on record
          for good, idempotently by ``record_id``; raise if the database cannot take them.
        * ``note_token_use({token id: when})``: remember when tokens (``TokenInfo.id``) were last used.
        * ``observe_pin(server_id=, tool_name=, definition=, fingerprint=)``: an upstream tool
          whose definition is not the pinned one (new or changed).
        * ``mark_unhealthy(workspace_id=, server_slug=, detail=)``: an upstream failed listing.
        * ``spool_name``: names the database the spool's rows belong to (a subdirectory), so a
          spool directory shared by mistake never sends rows to the wrong database.
    * ``token_pattern``: the shape of a bearer token; anything else is refused unlooked-up.
    """

    load_token: Callable[[str], TokenInfo | None]
    load_workspace: Callable[[str], WorkspaceConfig | None]
    read_changes: Callable[[datetime | None], tuple[datetime, dict[str, int]]]
    record_calls: Callable[[list[dict[str, Any]]], None]
    note_token_use: Callable[[dict[int | str, datetime]], None]
    observe_pin: Callable[..., None]
    mark_unhealthy: Callable[..., None]
    spool_name: str = "default"
    # The shape of a bearer token: anything else is refused without a lookup.
    token_pattern: re.Pattern[str] = re.compile(r"mng_[0-9a-f]{48}")
    # The scope an OAuth token needs for the gateway (gateway tokens carry none and need none).
    required_scope: str = "mcp"
