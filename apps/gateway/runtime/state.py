"""In-process snapshots the hot path reads: tokens and workspace configuration.

Loaded from the database on a miss (in a worker thread, never on the event loop) and kept
until an epoch in the database moves (``apps.core.epochs``): services move the tokens
epoch when a token is revoked or a person deactivated, and a workspace's epoch when its
members, servers, rules, pins or settings change, in the same transaction as the change.

Each process reads the epochs that moved at most twice a second, in the background while
requests keep coming, so there is no database query per request in the steady state. A
request that finds the last reading older than ``STALE_AFTER`` (an idle process) waits
for a fresh one, so a committed revocation is refused within a second everywhere, with or
without Redis. While the database does not answer, cached entries keep serving (see
``database_ok``; the view decides what to do with that).

Every cache is bounded: least recently used entries go first, and "no such token /
workspace" answers expire after ``NEGATIVE_TTL``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from apps.core import epochs, secrets
from apps.gateway.runtime.upstream import UpstreamConfig

logger = logging.getLogger(__name__)

REFRESH_EVERY = 0.5
STALE_AFTER = 1.0
NEGATIVE_TTL = 10.0
MAX_TOKENS = 200_000
MAX_WORKSPACES = 20_000


@dataclass(frozen=True)
class TokenInfo:
    id: int
    workspace_id: int
    kind: str
    user_id: int | None
    email: str
    prefix: str
    expires_at: datetime | None
    last_used_at: datetime | None

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
    enforcement: str
    deny_by_default: bool
    rate_limit_per_minute: int
    servers: tuple[ServerEntry, ...]
    rules: dict[int, frozenset[tuple[str, str]]]
    pins: dict[tuple[int, str], Pin]
    member_ids: frozenset[int]
    loaded_at: float = field(default_factory=time.monotonic)


def db_job(func):
    """For ORM work in a pool thread: drop the thread's connection when it is past its age."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper


@db_job
def _load_token(digest: str) -> TokenInfo | None:
    from apps.tokens.selectors import token_for_digest

    token = token_for_digest(digest)
    if token is None:
        return None
    return TokenInfo(
        id=token.pk,
        workspace_id=token.workspace_id,
        kind=token.kind,
        user_id=token.user_id,
        email=token.user.email if token.user_id else "",
        prefix=token.prefix,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
    )


def load_workspace(slug: str) -> WorkspaceConfig | None:
    from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
    from apps.workspaces.models import Workspace

    workspace = Workspace.objects.active().filter(slug=slug).first()
    if workspace is None:
        return None
    servers = []
    for server in UpstreamServer.objects.filter(
        workspace=workspace, enabled=True, status=UpstreamServer.Status.APPROVED
    ).order_by("position", "slug"):
        headers = tuple(sorted(server.get_headers().items()))
        servers.append(
            ServerEntry(
                id=server.pk,
                slug=server.slug,
                prefix=server.prefix,
                position=server.position,
                upstream=UpstreamConfig(
                    server_id=server.pk,
                    slug=server.slug,
                    url=server.url,
                    headers=headers,
                    timeout_seconds=server.timeout_seconds,
                    max_concurrency=server.max_concurrency,
                ),
            )
        )
    rules: dict[int, set[tuple[str, str]]] = {}
    for user_id, server_slug, tool in AllowRule.objects.filter(workspace=workspace).values_list(
        "user_id", "server_slug", "tool"
    ):
        rules.setdefault(user_id, set()).add((server_slug, tool))
    pins = {
        (server_id, name): Pin(fingerprint, pending)
        for server_id, name, fingerprint, pending in ToolPin.objects.filter(server__workspace=workspace).values_list(
            "server_id", "tool_name", "fingerprint", "pending_fingerprint"
        )
    }
    return WorkspaceConfig(
        id=workspace.pk,
        slug=workspace.slug,
        name=workspace.name,
        enforcement=workspace.enforcement,
        deny_by_default=workspace.deny_by_default,
        rate_limit_per_minute=workspace.rate_limit_per_minute,
        servers=tuple(servers),
        rules={user_id: frozenset(pairs) for user_id, pairs in rules.items()},
        pins=pins,
        member_ids=frozenset(workspace.memberships.values_list("user_id", flat=True)),
    )


class _Lru(OrderedDict):
    """A bounded map; ``None`` answers (no such thing) expire after NEGATIVE_TTL."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def lookup(self, key):
        """(found, value): a miss, an expired negative answer and a hit are told apart."""
        item = self.get(key)
        if item is None:
            return False, None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self[key]
            return False, None
        self.move_to_end(key)
        return True, value

    def store(self, key, value) -> None:
        self[key] = (value, time.monotonic() + NEGATIVE_TTL if value is None else None)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@db_job
def _read_epochs(since: datetime) -> tuple[datetime, dict[str, int]]:
    now = timezone.now()
    return now, epochs.epochs_changed_since(since)


class Snapshots:
    """Per-process caches with database-epoch invalidation."""

    def __init__(self) -> None:
        self.tokens = _Lru(MAX_TOKENS)
        self.workspaces = _Lru(MAX_WORKSPACES)
        self._versions: dict[str, int] = {}
        self._read_at = -1e9  # monotonic time of the last successful reading
        self._since: datetime | None = None
        self._refreshing: asyncio.Future | None = None
        self._failed_at = -1e9
        # Bumped by every invalidation: a load that started before one is not cached.
        self._generation = 0

    def clear(self) -> None:
        self.tokens.clear()
        self.workspaces.clear()
        self._versions.clear()
        self._read_at = -1e9
        self._since = None
        self._generation += 1

    def recheck_now(self) -> None:
        """Read the epochs on the next request instead of within a second (tests)."""
        self._read_at = -1e9
        self._failed_at = -1e9

    @property
    def database_ok(self) -> bool:
        """False while the last reading of the epochs failed (the database is not answering)."""
        return self._failed_at < self._read_at

    def cached_workspace(self, slug: str) -> tuple[bool, WorkspaceConfig | None]:
        """The workspace as cached, without touching the database: (known, config)."""
        return self.workspaces.lookup(slug)

    # --- invalidation -----------------------------------------------------------------

    async def _refresh(self) -> None:
        """Start a reading of the epochs if one is due; wait for it when the cache is stale."""
        now = time.monotonic()
        age = now - self._read_at
        if age < REFRESH_EVERY:
            return
        if self._refreshing is not None and self._refreshing.get_loop() is not asyncio.get_running_loop():
            self._refreshing = None  # left by another event loop (tests run one per test)
        if self._refreshing is None or self._refreshing.done():
            if now - self._failed_at < REFRESH_EVERY:
                return  # the database just failed us: serve from the cache, retry shortly
            self._refreshing = asyncio.ensure_future(self._read())
        if age >= STALE_AFTER and not (now - self._failed_at < REFRESH_EVERY):
            await asyncio.shield(self._refreshing)

    async def _read(self) -> None:
        since = self._since or timezone.now()
        try:
            read_at, changed = await sync_to_async(_read_epochs, thread_sensitive=False)(since)
        except Exception as exc:  # the database is down or failing: keep serving what we know
            if self.database_ok:
                logger.warning("cannot read invalidation epochs (%s): serving cached tokens", type(exc).__name__)
            self._failed_at = time.monotonic()
            return
        for scope, version in changed.items():
            if self._versions.get(scope) != version:
                self._versions[scope] = version
                self._invalidate(scope)
        self._since = read_at
        self._read_at = time.monotonic()

    def _invalidate(self, scope: str) -> None:
        self._generation += 1
        if scope == epochs.TOKENS:
            self.tokens.clear()
            return
        for slug, (config, _) in list(self.workspaces.items()):
            if config is None or epochs.workspace_scope(config.id) == scope:
                self.workspaces.pop(slug, None)

    # --- lookups ------------------------------------------------------------------------

    async def workspace(self, slug: str) -> WorkspaceConfig | None:
        await self._refresh()
        found, config = self.workspaces.lookup(slug)
        if found:
            return config
        generation = self._generation
        config = await sync_to_async(_load_workspace, thread_sensitive=False)(slug)
        if generation == self._generation:
            self.workspaces.store(slug, config)
        return config

    async def token(self, raw: str) -> TokenInfo | None:
        if not secrets.pattern("mng").match(raw):
            return None
        digest = secrets.digest(raw)
        await self._refresh()
        found, info = self.tokens.lookup(digest)
        if not found:
            generation = self._generation
            info = await sync_to_async(_load_token, thread_sensitive=False)(digest)
            if generation == self._generation:
                self.tokens.store(digest, info)
        if info is None:
            return None
        if info.expires_at is not None and info.expires_at <= timezone.now():
            return None
        return info


_load_workspace = db_job(load_workspace)

snapshots = Snapshots()
