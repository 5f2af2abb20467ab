"""The gateway's MCP methods: who may see and call what, routing to upstreams, and the
audit row of every call. Transport concerns (HTTP, sessions, SSE) are the host's (the
Django view ``apps.gateway.views``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mcp import types
from mcp_types import LOG_LEVEL_META_KEY, SERVER_INFO_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from relay import catalog as catalogs
from relay.codec import wire_json
from relay.config import Enforcement, Era, Hooks, TokenInfo, WorkspaceConfig
from relay.protocol import (
    CLIENT_CAPABILITY_OF,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
)
from relay.sessions import Sessions
from relay.spool import Recorder
from relay.streams import LIST_CHANGES, Listener, Streams
from relay.upstream import Notify, OnRequest, Upstream, UpstreamError, UpstreamPool, result_of

logger = logging.getLogger(__name__)

SERVER_VERSION = "1.0.0"
LIST_TTL_MS = int(catalogs.CATALOG_TTL * 1000)

# The gateway's own JSON-RPC codes (the standard ones: relay.protocol; -32000, the upstream
# failed: relay.upstream.UPSTREAM_ERROR).
TOOL_NOT_ALLOWED = -32003
TOOL_CHANGED = -32004
RATE_LIMITED = -32005

RELAYED_ID_PREFIX = "mcpnest-relay:"
RELAYED_ID_TTL = 60 * 60  # a client's answer to a relayed request is taken for an hour

REMOVED_IN_2026 = frozenset({"ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
LISTEN_WAIT = 2.0  # seconds a first call waits for its upstream session's GET stream to open

# The methods that reach an upstream's tools or data: each one is a ToolCall row.
RECORDED_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})

CANCELLED = 499  # the audit status of a call abandoned before its answer (nginx's "client closed request")


LISTS_BYTES = 64 * 1024 * 1024  # encoded tools/list results kept, in all


class Cancellable(Protocol):
    """What runs a call that its client may cancel (``Engine.in_flight``)."""

    def cancel(self) -> Any: ...


class Encoded(dict):
    """A result whose JSON encoding is already made (``json``): the host may send those bytes.
    Shared between callers: never to be changed."""

    json: bytes = b""


class RpcError(Exception):
    def __init__(self, code: int, message: str, *, data: Any = None, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status  # the HTTP-style outcome recorded in the audit row


@dataclass
class Caller:
    token: TokenInfo
    config: WorkspaceConfig
    ip: str
    protocol_version: str
    modern: bool
    client_name: str = ""
    client_version: str = ""
    session_id: str = ""
    # Which requests a 2025-era client takes on its response streams: "sampling",
    # "elicitation", "roots" (declared at initialize).
    client_capabilities: frozenset[str] = frozenset()


# --- permissions ----------------------------------------------------------------------


def rule_blocks(caller: Caller, server_slug: str, name: str) -> bool:
    """Whether this member's allowlist leaves ``server_slug:name`` out."""
    if caller.token.is_workspace_token:
        return False
    rules = caller.config.rules.get(caller.token.user_id)
    if not rules:
        return caller.config.deny_by_default
    return (server_slug, name) not in rules and (server_slug, "*") not in rules


def _printable(name: str) -> bool:
    """No control characters (NUL…) and no unpaired surrogates: no real tool, prompt or URI has them."""
    if name.isprintable():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(char) in ("Cc", "Cs") for char in name)


def visible(caller: Caller, server_slug: str, name: str) -> bool:
    return caller.config.enforcement is not Enforcement.ENFORCE or not rule_blocks(caller, server_slug, name)


# --- results ----------------------------------------------------------------------------


def _server_info(config: WorkspaceConfig) -> dict[str, Any]:
    return {"name": "mcpnest", "title": f"MCPNest gateway: {config.name}", "version": SERVER_VERSION}


# List changes and resource updates reach a 2025 session on its GET stream, a 2026-07-28
# client on its subscriptions/listen stream.
CAPABILITIES = {
    "tools": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "prompts": {"listChanged": True},
    "completions": {},
}


MODERN_ONLY_RESULT_KEYS = ("resultType", "ttlMs", "cacheScope")


def _finish(caller: Caller, result: dict[str, Any], *, cacheable: bool = False) -> dict[str, Any]:
    if caller.modern:
        result["resultType"] = result.get("resultType", "complete")
        meta = dict(result.get("_meta") or {})
        meta[SERVER_INFO_META_KEY] = _server_info(caller.config)
        result["_meta"] = meta
        if cacheable:
            result["ttlMs"] = LIST_TTL_MS
            result["cacheScope"] = "private"  # lists differ per member
        return result
    # A 2025 caller gets a 2025 result, whatever era the upstream speaks: no 2026-only
    # fields, and never the upstream's identity in place of the gateway's.
    for key in MODERN_ONLY_RESULT_KEYS:
        result.pop(key, None)
    meta = result.get("_meta")
    if isinstance(meta, dict) and SERVER_INFO_META_KEY in meta:
        meta = {k: v for k, v in meta.items() if k != SERVER_INFO_META_KEY}
        if meta:
            result["_meta"] = meta
        else:
            result.pop("_meta")
    return result


def initialize_result(config: WorkspaceConfig, requested: Any) -> tuple[str, dict[str, Any]]:
    version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else HANDSHAKE_PROTOCOL_VERSIONS[-1]
    return version, {
        "protocolVersion": version,
        "capabilities": CAPABILITIES,
        "serverInfo": _server_info(config),
        "instructions": f"Tools of the {config.name} workspace, governed by MCPNest.",
    }


def discover_result(config: WorkspaceConfig) -> dict[str, Any]:
    return {
        "supportedVersions": [*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS],
        "capabilities": CAPABILITIES,
        "instructions": f"Tools of the {config.name} workspace, governed by MCPNest.",
        "resultType": "complete",
        "ttlMs": LIST_TTL_MS,
        "cacheScope": "private",
        "_meta": {SERVER_INFO_META_KEY: _server_info(config)},
    }


# --- dispatch -----------------------------------------------------------------------------


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _params(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object.", status=400)
    return params


# The shapes of the params the gateway reads, as the SDK declares them: a request that does
# not fit is answered -32602 with the field and what is wrong with it.
PARAMS_SHAPES: dict[str, type[BaseModel]] = {
    "tools/list": types.PaginatedRequestParams,
    "prompts/list": types.PaginatedRequestParams,
    "resources/list": types.PaginatedRequestParams,
    "resources/templates/list": types.PaginatedRequestParams,
    "tools/call": types.CallToolRequestParams,
    "prompts/get": types.GetPromptRequestParams,
    "resources/read": types.ReadResourceRequestParams,
    "completion/complete": types.CompleteRequestParams,
    "resources/subscribe": types.SubscribeRequestParams,
    "resources/unsubscribe": types.UnsubscribeRequestParams,
}


def _check_shape(method: str, params: dict[str, Any]) -> None:
    shape = PARAMS_SHAPES.get(method)
    if shape is None:
        return
    try:
        shape.model_validate(params)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise RpcError(
            INVALID_PARAMS,
            f"Invalid params.{field} for {method}: {problem['msg']}."
            if field
            else f"Invalid params: {problem['msg']}.",
            data={"field": f"params.{field}"} if field else None,
            status=400,
        ) from None


def _cursor(params: dict[str, Any]) -> None:
    # The gateway returns whole lists; a cursor it never issued is invalid.
    if params.get("cursor") not in (None, ""):
        raise RpcError(INVALID_PARAMS, "Unknown cursor: this gateway returns complete lists without nextCursor.")


def _without_log_messages(notify: Notify) -> Notify:
    async def relay(notification: dict[str, Any]) -> None:
        if notification.get("method") != "notifications/message":
            await notify(notification)

    return relay


class Engine:
    """Answers MCP requests for the gateway that owns it: catalogs cached per workspace
    (rebuilt when its configuration object changes, or after ``CATALOG_TTL``), upstream
    calls through the gateway's pool, and every recorded call's row in its spool."""

    def __init__(self, *, pool: UpstreamPool, recorder: Recorder, hooks: Hooks, sessions: Sessions) -> None:
        self.pool = pool
        self.sessions = sessions
        self.recorder = recorder
        self.hooks = hooks
        self._catalogs: dict[int, tuple[WorkspaceConfig, catalogs.Catalog]] = {}
        self._lists: dict[tuple, tuple[catalogs.Catalog, WorkspaceConfig, Encoded]] = {}
        self._lists_bytes = 0
        self._building: dict[int, asyncio.Future] = {}
        self._reported: set[tuple[int, str, str]] = set()
        self._background: set[asyncio.Future] = set()
        self.streams = Streams()
        self._in_flight: dict[tuple[int, str, str | int], Cancellable] = {}  # (workspace, session, id) -> call

    # --- catalog cache ------------------------------------------------------------------

    async def catalog_for(self, config: WorkspaceConfig) -> catalogs.Catalog:
        cached = self._catalogs.get(config.id)
        # A new config object means servers, rules or pins changed: rebuild.
        if cached and cached[0] is config and time.monotonic() - cached[1].built_at < catalogs.CATALOG_TTL:
            return cached[1]
        pending = self._building.get(config.id)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._building[config.id] = future
        try:
            built = await catalogs.build(config, self.pool)
            self._catalogs[config.id] = (config, built)
            future.set_result(built)
            self._report(config, built)
            return built
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self._building.pop(config.id, None)

    def invalidate_catalogs(self) -> None:
        self._catalogs.clear()
        self._lists.clear()
        self._lists_bytes = 0
        self._reported.clear()

    def _in_background(self, job) -> None:
        # Keep a reference until done: the loop holds tasks only weakly.
        task = asyncio.ensure_future(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Stop reading upstream streams; wait for the reports still being written (at the gateway's stop)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _report(self, config: WorkspaceConfig, built: catalogs.Catalog) -> None:
        """Tell the host of pin changes and upstream failures, off the hot path, once per change."""
        for server, name, definition, fingerprint in built.changed_pins:
            key = (server.id, name, fingerprint)
            if key not in self._reported:
                self._reported.add(key)
                self._in_background(
                    asyncio.to_thread(
                        self.hooks.observe_pin,
                        server_id=server.id,
                        tool_name=name,
                        definition=definition,
                        fingerprint=fingerprint,
                    )
                )
        for slug, detail in built.failures.items():
            key = (config.id, slug, "down")
            if key not in self._reported:
                self._reported.add(key)
                self._in_background(
                    asyncio.to_thread(
                        self.hooks.mark_unhealthy, workspace_id=config.id, server_slug=slug, detail=detail
                    )
                )

    # --- requests from upstreams to clients ---------------------------------------------

    def _relay_requests(self, caller: Caller, server_id: int, server_slug: str, notify: Notify | None) -> OnRequest:
        """How a call passes on what its upstream asks of the client while answering it
        (2025 era: sampling, elicitation, roots on the call's response stream). The request
        goes out on the caller's stream under an id of ours that seals where it came from,
        so the client's answer can be sent back by whichever gateway process receives it
        (``route_reply``). A client that cannot take it (no stream, capability not declared)
        gets nothing, and the upstream a clear error at once, never a hang."""

        async def relay(request: dict[str, Any], upstream: Upstream) -> None:
            method = request.get("method")
            needed = CLIENT_CAPABILITY_OF.get(method) if isinstance(method, str) else None
            route = {
                "t": caller.token.id,
                "s": server_id,
                "u": upstream.session_id,
                "v": upstream.protocol_version,
                "i": request.get("id"),
            }
            if notify is not None and needed is not None and needed in caller.client_capabilities:
                relayed = {**request, "id": RELAYED_ID_PREFIX + self.sessions.seal(route)}
                params = _object(request.get("params"))
                token = _object(params.get("_meta")).get("progressToken")
                if isinstance(token, str | int):
                    # The client's progress on this request finds its way back the same way.
                    sealed = RELAYED_ID_PREFIX + self.sessions.seal({**route, "i": None, "p": token})
                    relayed["params"] = {**params, "_meta": {**params["_meta"], "progressToken": sealed}}
                try:
                    await notify(relayed)
                    upstream.relayed_as(request.get("id"), relayed["id"])
                    return
                except LookupError:
                    pass  # the client has no stream open to take it
            await upstream.answer(
                request.get("id"),
                error={
                    "code": METHOD_NOT_FOUND,
                    "message": f"The client calling {server_slug} through the MCPNest gateway does not take "
                    f"{method} requests.",
                },
            )

        return relay

    def _route(self, caller: Caller, sealed: Any) -> tuple[dict[str, Any], Upstream] | None:
        """Where a relayed id or progress token came from: (route, an upstream connection to
        its server), if it is one of ours, sealed for this caller's token."""
        if not isinstance(sealed, str) or not sealed.startswith(RELAYED_ID_PREFIX):
            return None
        route = self.sessions.open(sealed.removeprefix(RELAYED_ID_PREFIX), ttl=RELAYED_ID_TTL)
        if route is None or route.get("t") != caller.token.id:
            return None
        server = next((s for s in caller.config.servers if s.id == route.get("s")), None)
        return None if server is None else (route, self.pool.get(server.upstream))

    async def route_reply(self, *, caller: Caller, reply: dict[str, Any]) -> bool:
        """Send a client's answer to a relayed request back to the upstream that asked;
        False if the id is not one of ours for this caller."""
        found = self._route(caller, reply.get("id"))
        if found is None:
            return False
        route, upstream = found
        error, result = reply.get("error"), reply.get("result")
        await upstream.answer(
            route.get("i"),
            result=result if isinstance(result, dict) else None,
            error=error if isinstance(error, dict) else None,
            session_id=route.get("u"),
            protocol_version=route.get("v"),
        )
        return True

    async def client_notification(self, *, caller: Caller, notification: dict[str, Any]) -> None:
        """What a 2025 client notifies that concerns a call: it cancels one of its own calls
        (in this process), or cancels or reports progress on a request relayed to it (sent
        on to the upstream that asked, from any process)."""
        method, params = notification.get("method"), _object(notification.get("params"))
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            found = self._route(caller, request_id)
            if found is not None:
                route, upstream = found
                forwarded = {**params, "requestId": route.get("i")}
                await upstream.send(
                    {"method": method, "params": forwarded}, session_id=route.get("u"), protocol_version=route.get("v")
                )
            elif isinstance(request_id, str | int):
                task = self._in_flight.get((caller.config.id, caller.session_id, request_id))
                if task is not None:
                    task.cancel()
        elif method == "notifications/progress":
            found = self._route(caller, params.get("progressToken"))
            if found is not None:
                route, upstream = found
                forwarded = {**params, "progressToken": route.get("p")}
                await upstream.send(
                    {"method": method, "params": forwarded}, session_id=route.get("u"), protocol_version=route.get("v")
                )

    @contextlib.contextmanager
    def in_flight(self, caller: Caller, request_id: Any, task: Cancellable):
        """While a 2025 session's call runs, its ``notifications/cancelled`` can stop it
        (``task.cancel()``)."""
        if caller.modern or not isinstance(request_id, str | int):
            yield
            return
        key = (caller.config.id, caller.session_id, request_id)
        self._in_flight[key] = task
        try:
            yield
        finally:
            if self._in_flight.get(key) is task:
                del self._in_flight[key]

    # --- what reaches clients outside their calls' answers (relay.streams) -----------------

    async def _subscribe(self, caller: Caller, params: dict[str, Any], *, subscribe: bool) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str) or not uri or not _printable(uri):
            raise RpcError(INVALID_PARAMS, "params.uri must be a resource URI (a string).", status=400)
        built = await self.catalog_for(caller.config)
        server = catalogs.server_for_uri(built, uri)
        if server is None or not visible(caller, server.slug, "*"):
            raise RpcError(INVALID_PARAMS, f"Unknown resource: {uri}", data={"uri": uri}, status=404)
        method = "resources/subscribe" if subscribe else "resources/unsubscribe"
        try:
            upstream = await self._connection(caller, server.upstream, server.id, server.slug)
            if not _object(upstream.capabilities.get("resources")).get("subscribe"):
                raise RpcError(
                    METHOD_NOT_FOUND,
                    f"Upstream server {server.slug} does not offer resource subscriptions.",
                    status=404,
                )
            result_of(server.slug, await upstream.request(method, {"uri": uri}, timeout=upstream.timeout))
        except UpstreamError as exc:
            raise RpcError(exc.code, exc.client_message, data=exc.data, status=exc.status) from None
        session = (caller.config.id, caller.session_id)
        if subscribe:
            self.streams.subscribe(session, server.id, uri)
        else:
            self.streams.unsubscribe(session, server.id, uri)
        return _finish(caller, {})

    async def _connection(self, caller: Caller, config, server_id: int, server_slug: str) -> Upstream:
        """The upstream connection for this caller's calls; for a 2025-era client session
        with an upstream session of its own, that session's GET stream is read first, so
        what the upstream sends there (requests, updates) reaches this client."""
        upstream = await self.pool.for_caller(config, session=None if caller.modern else caller.session_id)
        if upstream.legacy_only and upstream.listener is None:
            session = (caller.config.id, caller.session_id)

            async def to_get_stream(message: dict[str, Any]) -> None:
                self.streams.push(session, message)  # LookupError: no GET stream open

            upstream.listener = asyncio.ensure_future(
                upstream.listen(
                    self._updates(server_id), self._relay_requests(caller, server_id, server_slug, to_get_stream)
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(upstream.listening.wait(), LISTEN_WAIT)
        return upstream

    def _updates(self, server_id: int) -> Notify:
        """Where an upstream session's unprompted notifications go."""

        async def on_message(message: dict[str, Any]) -> None:
            method = message.get("method")
            params = _object(message.get("params"))
            if method == "notifications/resources/updated" and isinstance(params.get("uri"), str):
                self.streams.resource_updated(server_id, params["uri"])
            elif method in LIST_CHANGES:
                self.list_changed(server_id, method)

        return on_message

    def list_changed(self, server_id: int, method: str) -> None:
        """An upstream's list changed: rebuild the catalogs that hold it, and tell the
        2025-era sessions of those workspaces on their GET streams, and their 2026-07-28
        clients that listen for it."""
        self.streams.list_changed(server_id, method, self._forget_catalogs(server_id))

    # --- subscriptions/listen (2026-07-28) -------------------------------------------------

    async def open_listen(self, caller: Caller, message: dict[str, Any]) -> Listener:
        """A 2026-07-28 client's ``subscriptions/listen``: the stream's listener, after
        every upstream of the workspace is watched for what it asks."""
        params = _params(message)
        try:
            wanted = types.SubscriptionsListenRequestParams.model_validate(params).notifications
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(part) for part in problem["loc"])
            raise RpcError(
                INVALID_PARAMS, f"Invalid params.{field} for subscriptions/listen: {problem['msg']}."
            ) from None
        asked = wanted.model_dump(by_alias=True)
        listener = Listener(
            workspace_id=caller.config.id,
            server_ids=frozenset(server.id for server in caller.config.servers),
            subscription_id=message.get("id"),
            methods=frozenset(method for method, key in LIST_CHANGES.items() if asked.get(key)),
            uris=frozenset(wanted.resource_subscriptions or ()),
        )
        self.streams.listen(listener)
        built = await self.catalog_for(caller.config)
        for server in caller.config.servers:
            uris = {uri for uri in listener.uris if catalogs.server_for_uri(built, uri) is server}
            try:
                await self._watch(server.upstream, server.id, uris)
            except UpstreamError as exc:  # that upstream's changes are missed; the others' are not
                logger.warning("cannot watch upstream %s for changes: %s", server.slug, exc)
        return listener

    async def _watch(self, config, server_id: int, uris: set[str]) -> None:
        """Keep an eye on an upstream's changes (once per upstream; again when more URIs are
        wanted): its subscriptions/listen stream (2026-07-28), or its session's GET stream
        and resources/subscribe (2025)."""
        upstream = self.pool.get(config)
        await upstream.ensure_connected(min(upstream.timeout, 10.0))
        known = upstream.watched
        running = upstream.listener is not None and not upstream.listener.done()
        if running and uris <= known:
            return
        everything = upstream.watched = known | uris
        if upstream.era is Era.MODERN:
            if upstream.listener is not None:
                upstream.listener.cancel()
            upstream.listening.clear()
            upstream.listener = asyncio.ensure_future(upstream.watch(self._updates(server_id), sorted(everything)))
            with contextlib.suppress(TimeoutError):  # acknowledge the client once the upstream listens
                await asyncio.wait_for(upstream.listening.wait(), LISTEN_WAIT)
        elif upstream.era is Era.LEGACY:
            if not running:
                upstream.listener = asyncio.ensure_future(upstream.listen(self._updates(server_id)))
            if _object(upstream.capabilities.get("resources")).get("subscribe"):
                for uri in sorted(uris - known):
                    result_of(config.slug, await upstream.request("resources/subscribe", {"uri": uri}))

    def _forget_catalogs(self, server_id: int) -> list[int]:
        """Drop the cached catalogs that hold this server; the ids of their workspaces."""
        workspaces = [
            workspace_id
            for workspace_id, (config, _) in self._catalogs.items()
            if any(server.id == server_id for server in config.servers)
        ]
        for workspace_id in workspaces:
            self._catalogs.pop(workspace_id, None)
        return workspaces

    def _watching_lists(self, server_id: int, notify: Notify) -> Notify:
        """A call's notifications as they go out; a list change on the way drops the catalog."""

        async def relay(notification: dict[str, Any]) -> None:
            if notification.get("method") in LIST_CHANGES:
                self._forget_catalogs(server_id)
            await notify(notification)

        return relay

    def _tools_list(self, caller: Caller, built: catalogs.Catalog) -> Encoded:
        """The tools/list result, built and JSON-encoded once per catalog, configuration,
        era and audience (everyone; under enforcement, each member apart): a workspace with
        a thousand tools answers a cached list without encoding 200 KB again."""
        config = caller.config
        member = (
            caller.token.user_id
            if config.enforcement is Enforcement.ENFORCE and not caller.token.is_workspace_token
            else None
        )
        key = (config.id, member, caller.modern)
        cached = self._lists.get(key)
        if cached is not None and cached[0] is built and cached[1] is config:
            return cached[2]
        tools = [
            entry.definition
            for entry in built.tools.values()
            if not entry.withheld and visible(caller, entry.server.slug, entry.upstream_name)
        ]
        result = Encoded(_finish(caller, {"tools": tools}, cacheable=True))
        result.json = wire_json(result)
        self._lists_bytes += len(result.json) - (len(cached[2].json) if cached else 0)
        if self._lists_bytes > LISTS_BYTES:
            self._lists.clear()
            self._lists_bytes = len(result.json)
        self._lists[key] = (built, config, result)
        return result

    # --- dispatch -----------------------------------------------------------------------

    async def dispatch(self, caller: Caller, message: dict[str, Any], notify: Notify | None = None) -> dict[str, Any]:
        """Answer one JSON-RPC request (anything but initialize); raises RpcError."""
        method = message["method"]
        params = _params(message)
        # A recorded call's shape is checked on record (_call); a method 2026-07-28 removed is
        # unknown to a modern caller, whatever its params.
        if method not in RECORDED_METHODS and not (caller.modern and method in REMOVED_IN_2026):
            _check_shape(method, params)
        if method == "ping" and not caller.modern:
            return {}  # removed in 2026-07-28: a modern ping is an unknown method (404 -32601)
        if method == "server/discover":
            return discover_result(caller.config)
        if method == "tools/list":
            _cursor(params)
            return self._tools_list(caller, await self.catalog_for(caller.config))
        if method == "prompts/list":
            _cursor(params)
            built = await self.catalog_for(caller.config)
            prompts = [e.definition for e in built.prompts.values() if visible(caller, e.server.slug, e.upstream_name)]
            return _finish(caller, {"prompts": prompts}, cacheable=True)
        if method == "resources/list":
            _cursor(params)
            built = await self.catalog_for(caller.config)
            resources = [e.definition for e in built.resources.values() if visible(caller, e.server.slug, "*")]
            return _finish(caller, {"resources": resources}, cacheable=True)
        if method == "resources/templates/list":
            _cursor(params)
            built = await self.catalog_for(caller.config)
            templates = [e.definition for e in built.templates if visible(caller, e.server.slug, "*")]
            return _finish(caller, {"resourceTemplates": templates}, cacheable=True)
        if method in RECORDED_METHODS:
            return await self._call(caller, message, method, params, notify)
        if method == "completion/complete":
            return await self._complete(caller, params)
        if method in ("resources/subscribe", "resources/unsubscribe") and not caller.modern:
            return await self._subscribe(caller, params, subscribe=method == "resources/subscribe")
        if method == "logging/setLevel" and not caller.modern:
            return {}
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}", status=404)

    async def _complete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        """Route an argument completion to the upstream that owns the prompt or resource template."""
        ref = params["ref"]  # a prompt or resource reference (_check_shape)
        built = await self.catalog_for(caller.config)
        if ref["type"] == "ref/prompt":
            entry = built.prompts.get(ref.get("name"))
            if entry is None or not visible(caller, entry.server.slug, entry.upstream_name):
                raise RpcError(INVALID_PARAMS, f"Unknown prompt: {ref.get('name')}", status=404)
            server, ref = entry.server, {**ref, "name": entry.upstream_name}
        else:
            uri = ref.get("uri")
            template = next((t for t in built.templates if t.exposed == uri), None)
            server = (
                template.server if template else catalogs.server_for_uri(built, uri) if isinstance(uri, str) else None
            )
            if server is None or not visible(caller, server.slug, "*"):
                raise RpcError(INVALID_PARAMS, f"Unknown resource: {uri}", data={"uri": uri}, status=404)
        forwarded = {k: v for k, v in params.items() if k != "_meta"}
        forwarded["ref"] = ref
        try:
            result = await self.pool.get(server.upstream).call(
                "completion/complete", forwarded, workspace_id=caller.config.id, workspace_slug=caller.config.slug
            )
            return _finish(caller, result or {"completion": {"values": []}})
        except UpstreamError as exc:  # unreachable, busy, malformed, or the upstream's own error (relayed)
            raise RpcError(exc.code, exc.client_message, data=exc.data, status=exc.status) from None
        except Exception:
            logger.exception("completion/complete through upstream %s failed", server.slug)
            raise RpcError(
                INTERNAL_ERROR,
                f"The gateway failed relaying completion/complete to upstream server {server.slug}; "
                "its log has the details.",
                status=502,
            ) from None

    async def _call(
        self, caller: Caller, message: dict[str, Any], method: str, params: dict[str, Any], notify: Notify | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        name_key = "uri" if method == "resources/read" else "name"
        name = params.get(name_key)
        server_slug, upstream_name, shadow_blocked = "", name if isinstance(name, str) else "", False
        try:
            _check_shape(method, params)
            if not name:
                raise RpcError(INVALID_PARAMS, f"{method} needs params.{name_key} (a string).", status=400)
            if not _printable(name):
                raise RpcError(
                    INVALID_PARAMS,
                    f"Invalid params.{name_key}: it contains a control character (such as NUL) or an unpaired "
                    "surrogate; send the exact name from the list.",
                    status=400,
                )
            built = await self.catalog_for(caller.config)
            if method == "resources/read":
                server = catalogs.server_for_uri(built, name)
                if server is None:
                    raise RpcError(INVALID_PARAMS, f"Unknown resource: {name}", data={"uri": name}, status=404)
                server_slug, rule_name = server.slug, "*"
            else:
                entries = built.tools if method == "tools/call" else built.prompts
                entry = entries.get(name)
                if entry is None:
                    kind = "tool" if method == "tools/call" else "prompt"
                    raise RpcError(INVALID_PARAMS, f"Unknown {kind}: {name}", status=404)
                server, server_slug, upstream_name, rule_name = (
                    entry.server,
                    entry.server.slug,
                    entry.upstream_name,
                    entry.upstream_name,
                )
                if entry.withheld:
                    raise RpcError(
                        TOOL_CHANGED,
                        f"Tool {name} is withheld: its definition upstream is "
                        f"{'new' if entry.withheld == 'unapproved' else 'changed'} and waits for an Owner or Admin "
                        "to approve it in the workspace's Security tab.",
                        status=409,
                    )
            blocked = rule_blocks(caller, server_slug, rule_name)
            if blocked and caller.config.enforcement is Enforcement.ENFORCE:
                raise RpcError(TOOL_NOT_ALLOWED, "Tool not allowed for this user", status=403)
            shadow_blocked = blocked and caller.config.enforcement is Enforcement.SHADOW
            forwarded = {k: v for k, v in params.items() if k != "_meta"}
            forwarded[name_key] = upstream_name
            progress = (
                (params.get("_meta") or {}).get("progressToken") if isinstance(params.get("_meta"), dict) else None
            )
            if progress is not None:
                forwarded["_meta"] = {"progressToken": progress}
            # 2026-07-28 upstreams send log notifications only when the request asks (_meta logLevel):
            # pass on a modern caller's level; a 2025 session gets every level, as 2025 servers send.
            meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
            log_level = meta.get(LOG_LEVEL_META_KEY) if caller.modern else "debug"
            if isinstance(log_level, str):
                forwarded.setdefault("_meta", {})[LOG_LEVEL_META_KEY] = log_level
            elif notify is not None:
                # A 2026-07-28 caller that did not opt in must get no log messages, even from a
                # 2025-era upstream that sends them unasked.
                notify = _without_log_messages(notify)
            try:
                # Within the workspace's and the upstream's concurrency limits and the upstream's timeout.
                upstream = await self._connection(caller, server.upstream, server.id, server.slug)
                if notify is not None:
                    notify = self._watching_lists(server.id, notify)
                result = await upstream.call(
                    method,
                    forwarded,
                    workspace_id=caller.config.id,
                    workspace_slug=caller.config.slug,
                    notify=notify,
                    on_request=self._relay_requests(caller, server.id, server.slug, notify),
                )
            except UpstreamError as exc:  # unreachable, busy, malformed, or the upstream's own error (relayed)
                raise RpcError(exc.code, exc.client_message, data=exc.data, status=exc.status) from None
            answer = _finish(caller, result)
            # A tool that ran and failed (isError) is relayed as it is, and recorded apart from a success.
            status = 422 if method == "tools/call" and result.get("isError") is True else 200
            self._record(caller, message, method, server_slug, upstream_name, status, None, started, shadow_blocked)
            return answer
        except RpcError as exc:
            self._record(
                caller, message, method, server_slug, upstream_name, exc.status, exc.code, started, shadow_blocked
            )
            raise
        except asyncio.CancelledError:
            # The client went away, or the server is shutting down: the call may have reached the
            # upstream all the same, so it goes on record (499: closed before the answer).
            self._record(caller, message, method, server_slug, upstream_name, CANCELLED, None, started, shadow_blocked)
            raise
        except Exception:
            # A bug, or an answer no check above foresaw: the caller still gets an answer and the
            # call a row. The traceback is logged; arguments, results and headers are not.
            logger.exception("%s through upstream %s failed", method, server_slug or "?")
            self._record(
                caller, message, method, server_slug, upstream_name, 502, INTERNAL_ERROR, started, shadow_blocked
            )
            raise RpcError(
                INTERNAL_ERROR,
                f"The gateway failed relaying {method} to upstream server {server_slug or '?'}; "
                "its log has the details.",
                status=502,
            ) from None

    def _record(
        self,
        caller: Caller,
        message: dict[str, Any],
        method: str,
        server_slug: str,
        name: str,
        status: int,
        error_code: int | None,
        started: float,
        shadow_blocked: bool,
    ) -> None:
        """Put the call on record (the spool) before its answer goes out. Field values are
        cleaned and bounded by the audit service, whatever a client or an upstream sent."""
        token = caller.token
        self.recorder.record(
            {
                # Unique, not secret (it only makes a replay idempotent): the random module's
                # generator, reseeded in a forked child, costs a tenth of a getrandom() call.
                "record_id": f"{random.getrandbits(128):032x}",
                "workspace_id": caller.config.id,
                "member_id": token.user_id,
                "member_repr": token.email,
                "token_prefix": token.prefix,
                "oauth_client": token.oauth_client,
                "server_slug": server_slug[:64],
                "tool_name": str(name)[:200],
                "method": method,
                "status": status,
                "error_code": error_code,
                "latency_ms": int((time.perf_counter() - started) * 1000),
                "client_ip": caller.ip,
                "client_name": caller.client_name[:100],
                "client_version": caller.client_version[:50],
                "session_id": caller.session_id[:100],
                "request_id": str(message.get("id", ""))[:100],
                "shadow_blocked": shadow_blocked,
                "created_at": datetime.now(UTC).isoformat(),
            }
        )
