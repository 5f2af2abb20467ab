"""In-process snapshots the hot path reads: tokens and workspace configuration.

Loaded from the database on a miss (in a worker thread, never on the event loop) and kept
until an epoch in the shared store moves: services bump the tokens epoch when a token is
revoked and a workspace's epoch when its servers, rules, pins or settings change. Epochs
are read at most once a second per worker, so a change reaches every worker within about
a second, with no database query per request in the steady state.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from apps.core import secrets
from apps.core import shared_state as shared
from apps.gateway.runtime.upstream import UpstreamConfig

EPOCH_CHECK_SECONDS = 1.0


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
    from apps.tokens.models import GatewayToken

    token = (
        GatewayToken.objects.filter(digest=digest, revoked_at__isnull=True, workspace__deleted_at__isnull=True)
        .select_related("user")
        .first()
    )
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
                upstream=UpstreamConfig(server_id=server.pk, slug=server.slug, url=server.url, headers=headers),
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


class Snapshots:
    """Per-process caches with epoch-based invalidation."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenInfo | None] = {}
        self.workspaces: dict[str, WorkspaceConfig | None] = {}
        self._epochs: dict[str, str] = {}
        self._checked_at = 0.0
        self._ws_ids: dict[str, int] = {}

    def clear(self) -> None:
        self.tokens.clear()
        self.workspaces.clear()
        self._epochs.clear()
        self._checked_at = 0.0

    def recheck_now(self) -> None:
        """Read the epochs on the next request instead of within a second (tests)."""
        self._checked_at = 0.0

    async def _refresh_epochs(self) -> None:
        now = time.monotonic()
        # Reading Redis is throttled to once a second; the in-process store costs nothing.
        if shared.uses_redis() and now - self._checked_at < EPOCH_CHECK_SECONDS:
            return
        self._checked_at = now
        keys = [shared.TOKENS_EPOCH, *(shared.workspace_epoch_key(i) for i in self._ws_ids.values())]
        values = await shared.read_epochs(keys)
        for key, value in zip(keys, values, strict=True):
            if self._epochs.get(key, value) != value:
                if key == shared.TOKENS_EPOCH:
                    self.tokens.clear()
                else:
                    for slug, ws_id in list(self._ws_ids.items()):
                        if shared.workspace_epoch_key(ws_id) == key:
                            self.workspaces.pop(slug, None)
            self._epochs[key] = value

    async def workspace(self, slug: str) -> WorkspaceConfig | None:
        await self._refresh_epochs()
        if slug in self.workspaces:
            return self.workspaces[slug]
        config = await sync_to_async(_load_workspace, thread_sensitive=False)(slug)
        if config is not None:
            key = shared.workspace_epoch_key(config.id)
            if key not in self._epochs:
                (self._epochs[key],) = await shared.read_epochs([key])
            self._ws_ids[slug] = config.id
        self.workspaces[slug] = config
        return config

    async def token(self, raw: str) -> TokenInfo | None:
        if not secrets.pattern("mng").match(raw):
            return None
        digest = secrets.digest(raw)
        await self._refresh_epochs()
        if digest in self.tokens:
            info = self.tokens[digest]
        else:
            if shared.TOKENS_EPOCH not in self._epochs:
                (self._epochs[shared.TOKENS_EPOCH],) = await shared.read_epochs([shared.TOKENS_EPOCH])
            info = await sync_to_async(_load_token, thread_sensitive=False)(digest)
            if len(self.tokens) > 50_000:
                self.tokens.clear()  # bounded memory against floods of random tokens
            self.tokens[digest] = info
        if info is None:
            return None
        if info.expires_at is not None and info.expires_at <= timezone.now():
            return None
        return info


_load_workspace = db_job(load_workspace)

snapshots = Snapshots()
