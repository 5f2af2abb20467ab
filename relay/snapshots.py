"""In-process snapshots the hot path reads: tokens and workspace configuration.

Loaded through the host's hooks on a miss (in a worker thread, never on the event loop)
and kept until an invalidation scope moves (``Hooks.read_changes``): the host moves the
tokens scope when a token is revoked or a person deactivated, and a workspace's scope when
its members, servers, rules, pins or settings change, in the same transaction as the change.

Each process reads the scopes that moved at most twice a second, in the background while
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
import hashlib
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime

from relay.config import TOKENS_SCOPE, Hooks, TokenInfo, WorkspaceConfig, workspace_scope

logger = logging.getLogger(__name__)

REFRESH_EVERY = 0.5
STALE_AFTER = 1.0
NEGATIVE_TTL = 10.0
MAX_TOKENS = 200_000
MAX_WORKSPACES = 20_000


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


class Snapshots:
    """Per-process caches with database-epoch invalidation."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
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
        try:
            read_at, changed = await asyncio.to_thread(self.hooks.read_changes, self._since)
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
        if scope == TOKENS_SCOPE:
            self.tokens.clear()
            return
        for slug, (config, _) in list(self.workspaces.items()):
            if config is None or workspace_scope(config.id) == scope:
                self.workspaces.pop(slug, None)

    # --- lookups ------------------------------------------------------------------------

    async def workspace(self, slug: str) -> WorkspaceConfig | None:
        await self._refresh()
        found, config = self.workspaces.lookup(slug)
        if found:
            return config
        generation = self._generation
        config = await asyncio.to_thread(self.hooks.load_workspace, slug)
        if generation == self._generation:
            self.workspaces.store(slug, config)
        return config

    async def token(self, raw: str) -> TokenInfo | None:
        if not self.hooks.token_pattern.fullmatch(raw):
            return None
        digest = hashlib.sha256(raw.encode()).hexdigest()
        await self._refresh()
        found, info = self.tokens.lookup(digest)
        if not found:
            generation = self._generation
            info = await asyncio.to_thread(self.hooks.load_token, digest)
            if generation == self._generation:
                self.tokens.store(digest, info)
        if info is None:
            return None
        if info.expires_at is not None and info.expires_at <= datetime.now(UTC):
            return None
        return info
