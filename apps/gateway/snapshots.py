"""The relay's view of Django's models and settings (reads only): tokens, workspaces and
their servers as ``relay.config`` snapshots, the MCPNEST_* settings as ``relay.config.
Settings``, and a pool of upstream connections for one-off jobs (approving a server,
health checks, the portal's tool picker) that never touches the gateway's own."""

from __future__ import annotations

from django.conf import settings

from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
from apps.oauth.selectors import access_token_for_digest
from apps.sso.selectors import sso_required_blocked_user_ids
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_for_digest
from apps.workspaces.models import Workspace
from relay.config import (
    Enforcement,
    Pin,
    ServerEntry,
    Settings,
    TokenInfo,
    UpstreamConfig,
    WhenDatabaseDown,
    WorkspaceConfig,
)
from relay.upstream import UpstreamPool


def upstream_config(server: UpstreamServer) -> UpstreamConfig:
    return UpstreamConfig(
        server_id=server.pk,
        slug=server.slug,
        url=server.url,
        headers=tuple(sorted(server.get_headers().items())),
        timeout_seconds=server.timeout_seconds,
        max_concurrency=server.max_concurrency,
    )


OAUTH_ID = "oauth"  # TokenInfo.id of an OAuth connection: oauth:<client pk>:<user pk>:<workspace pk>
OAUTH_PREFIX = "oauth"  # what the audit's token column says for an OAuth call


def oauth_connection_key(token_id: str) -> tuple[int, int, int] | None:
    """The (client, member, workspace) primary keys an OAuth TokenInfo.id names, or None."""
    scheme, _, rest = token_id.partition(":")
    parts = rest.split(":")
    if scheme != OAUTH_ID or len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def oauth_token_info(digest: str) -> TokenInfo | None:
    found = access_token_for_digest(digest)
    if found is None:
        return None
    token, workspace = found
    return TokenInfo(
        id=f"{OAUTH_ID}:{token.application_id}:{token.user_id}:{workspace.pk}",
        workspace_id=workspace.pk,
        kind=GatewayToken.Kind.MEMBER,
        user_id=token.user_id,
        email=token.user.email,
        prefix=OAUTH_PREFIX,
        expires_at=token.expires,
        last_used_at=None,
        scopes=frozenset(token.scope.split()),
        oauth_client=token.application.client_id,
    )


def token_info(digest: str) -> TokenInfo | None:
    """The gateway's snapshot of the live credential with this digest: a gateway token or
    an OAuth access token (both are SHA-256 digests of the bearer value)."""
    token = token_for_digest(digest)
    if token is None:
        return oauth_token_info(digest)
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


def workspace_config(slug: str) -> WorkspaceConfig | None:
    """The gateway's snapshot of an active workspace: its live servers, rules and pins."""
    workspace = Workspace.objects.active().filter(slug=slug).first()
    if workspace is None:
        return None
    servers = tuple(
        ServerEntry(
            id=server.pk,
            slug=server.slug,
            prefix=server.prefix,
            position=server.position,
            upstream=upstream_config(server),
        )
        for server in UpstreamServer.objects.filter(
            workspace=workspace, enabled=True, status=UpstreamServer.Status.APPROVED
        ).order_by("position", "slug")
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
    member_ids = frozenset(workspace.memberships.values_list("user_id", flat=True))
    # "SSO required": members who never signed in through the workspace's IdP are not let in.
    member_ids -= sso_required_blocked_user_ids(workspace_id=workspace.pk, user_ids=member_ids)
    return WorkspaceConfig(
        id=workspace.pk,
        slug=workspace.slug,
        name=workspace.name,
        enforcement=Enforcement(workspace.enforcement),
        deny_by_default=workspace.deny_by_default,
        rate_limit_per_minute=workspace.rate_limit_per_minute,
        servers=servers,
        rules={user_id: frozenset(pairs) for user_id, pairs in rules.items()},
        pins=pins,
        member_ids=member_ids,
    )


def relay_settings() -> Settings:
    return Settings(
        max_response_bytes=settings.MCPNEST_GATEWAY_MAX_RESPONSE_BYTES,
        upstream_timeout=float(settings.MCPNEST_GATEWAY_UPSTREAM_TIMEOUT),
        upstream_concurrency=settings.MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY,
        workspace_concurrency=settings.MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY,
        queue_seconds=float(settings.MCPNEST_GATEWAY_QUEUE_SECONDS),
        spool_dir=settings.MCPNEST_SPOOL_DIR,
        spool_max_bytes=settings.MCPNEST_SPOOL_MAX_BYTES,
        redis_url=settings.REDIS_URL or "",
        when_database_down=WhenDatabaseDown(settings.MCPNEST_GATEWAY_WHEN_DATABASE_DOWN),
        preauth_rate_limit=settings.MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT,
        session_secret=settings.SECRET_KEY.encode(),
        public_url=settings.MCPNEST_PUBLIC_URL,
    )


def one_off_pool() -> UpstreamPool:
    """Connections for one job on a loop of its own: ``async with one_off_pool() as pool``
    closes them (and forgets the sessions) at the end."""
    return UpstreamPool(relay_settings())
