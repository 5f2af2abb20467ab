"""The gateway's MCP methods: who may see and call what, routing to upstreams, and the
audit row of every call. Transport concerns (HTTP, sessions, SSE) live in views.py."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone
from mcp_types import LOG_LEVEL_META_KEY, SERVER_INFO_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from apps.gateway.runtime import catalog as catalogs
from apps.gateway.runtime.recorder import recorder
from apps.gateway.runtime.state import TokenInfo, WorkspaceConfig, db_job
from apps.gateway.runtime.upstream import Notify, UpstreamError, upstream_for

logger = logging.getLogger(__name__)

SERVER_VERSION = "1.0.0"
LIST_TTL_MS = int(catalogs.CATALOG_TTL * 1000)

# JSON-RPC error codes. -32000..-32019 are implementation-defined.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# -32000, the upstream failed: runtime.upstream.UPSTREAM_ERROR
TOOL_NOT_ALLOWED = -32003
TOOL_CHANGED = -32004
RATE_LIMITED = -32005

# The methods that reach an upstream's tools or data: each one is a ToolCall row.
RECORDED_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})

CANCELLED = 499  # the audit status of a call abandoned before its answer (nginx's "client closed request")


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


# --- catalog cache ----------------------------------------------------------------------

_catalogs: dict[int, tuple[WorkspaceConfig, catalogs.Catalog]] = {}
_building: dict[int, asyncio.Future] = {}
_reported: set[tuple[int, str, str]] = set()


async def catalog_for(config: WorkspaceConfig) -> catalogs.Catalog:
    cached = _catalogs.get(config.id)
    # A new config object means servers, rules or pins changed: rebuild.
    if cached and cached[0] is config and time.monotonic() - cached[1].built_at < catalogs.CATALOG_TTL:
        return cached[1]
    pending = _building.get(config.id)
    if pending is not None:
        return await asyncio.shield(pending)
    future = asyncio.get_running_loop().create_future()
    _building[config.id] = future
    try:
        built = await catalogs.build(config)
        _catalogs[config.id] = (config, built)
        future.set_result(built)
        _report(config, built)
        return built
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # mark retrieved
        raise
    finally:
        _building.pop(config.id, None)


def invalidate_catalogs() -> None:
    _catalogs.clear()
    _reported.clear()


_background: set[asyncio.Future] = set()


def _in_background(job) -> None:
    # Keep a reference until done: the loop holds tasks only weakly.
    task = asyncio.ensure_future(job)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _report(config: WorkspaceConfig, built: catalogs.Catalog) -> None:
    """Write pin changes and upstream failures off the hot path, once per change."""
    from apps.gateway import services

    for server, name, definition, fingerprint in built.changed_pins:
        key = (server.id, name, fingerprint)
        if key not in _reported:
            _reported.add(key)
            _in_background(
                sync_to_async(db_job(services.pin_observe), thread_sensitive=False)(
                    server_id=server.id, tool_name=name, definition=definition, fingerprint=fingerprint
                )
            )
    for slug, detail in built.failures.items():
        key = (config.id, slug, "down")
        if key not in _reported:
            _reported.add(key)
            _in_background(
                sync_to_async(db_job(services.server_mark_unhealthy), thread_sensitive=False)(
                    workspace_id=config.id, server_slug=slug, detail=detail
                )
            )


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
    return caller.config.enforcement != "enforce" or not rule_blocks(caller, server_slug, name)


# --- results ----------------------------------------------------------------------------


def _server_info(config: WorkspaceConfig) -> dict[str, Any]:
    return {"name": "mcpnest", "title": f"MCPNest gateway: {config.name}", "version": SERVER_VERSION}


CAPABILITIES = {"tools": {"listChanged": False}, "resources": {}, "prompts": {}, "completions": {}}


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


def _params(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "params must be an object.", status=400)
    return params


def _cursor(params: dict[str, Any]) -> None:
    # The gateway returns whole lists; a cursor it never issued is invalid.
    if params.get("cursor") not in (None, ""):
        raise RpcError(INVALID_PARAMS, "Unknown cursor: this gateway returns complete lists without nextCursor.")


async def dispatch(caller: Caller, message: dict[str, Any], notify: Notify | None = None) -> dict[str, Any]:
    """Answer one JSON-RPC request (anything but initialize); raises RpcError."""
    method = message["method"]
    params = _params(message)
    if method == "ping" and not caller.modern:
        return {}  # removed in 2026-07-28: a modern ping is an unknown method (404 -32601)
    if method == "server/discover":
        return discover_result(caller.config)
    if method == "tools/list":
        _cursor(params)
        built = await catalog_for(caller.config)
        tools = [
            entry.definition
            for entry in built.tools.values()
            if not entry.withheld and visible(caller, entry.server.slug, entry.upstream_name)
        ]
        return _finish(caller, {"tools": tools}, cacheable=True)
    if method == "prompts/list":
        _cursor(params)
        built = await catalog_for(caller.config)
        prompts = [e.definition for e in built.prompts.values() if visible(caller, e.server.slug, e.upstream_name)]
        return _finish(caller, {"prompts": prompts}, cacheable=True)
    if method == "resources/list":
        _cursor(params)
        built = await catalog_for(caller.config)
        resources = [e.definition for e in built.resources.values() if visible(caller, e.server.slug, "*")]
        return _finish(caller, {"resources": resources}, cacheable=True)
    if method == "resources/templates/list":
        _cursor(params)
        built = await catalog_for(caller.config)
        templates = [e.definition for e in built.templates if visible(caller, e.server.slug, "*")]
        return _finish(caller, {"resourceTemplates": templates}, cacheable=True)
    if method in RECORDED_METHODS:
        return await _call(caller, message, method, params, notify)
    if method == "completion/complete":
        return await _complete(caller, params)
    if method == "logging/setLevel" and not caller.modern:
        return {}
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}", status=404)


def _without_log_messages(notify: Notify) -> Notify:
    async def relay(notification: dict[str, Any]) -> None:
        if notification.get("method") != "notifications/message":
            await notify(notification)

    return relay


async def _complete(caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    """Route an argument completion to the upstream that owns the prompt or resource template."""
    ref = params.get("ref")
    if not isinstance(ref, dict) or ref.get("type") not in ("ref/prompt", "ref/resource"):
        raise RpcError(
            INVALID_PARAMS,
            'params.ref must be {"type": "ref/prompt", "name": …} or {"type": "ref/resource", "uri": …}.',
            status=400,
        )
    built = await catalog_for(caller.config)
    if ref["type"] == "ref/prompt":
        entry = built.prompts.get(ref.get("name"))
        if entry is None or not visible(caller, entry.server.slug, entry.upstream_name):
            raise RpcError(INVALID_PARAMS, f"Unknown prompt: {ref.get('name')}", status=404)
        server, ref = entry.server, {**ref, "name": entry.upstream_name}
    else:
        uri = ref.get("uri")
        template = next((t for t in built.templates if t.exposed == uri), None)
        server = template.server if template else catalogs.server_for_uri(built, uri) if isinstance(uri, str) else None
        if server is None or not visible(caller, server.slug, "*"):
            raise RpcError(INVALID_PARAMS, f"Unknown resource: {uri}", data={"uri": uri}, status=404)
    forwarded = {k: v for k, v in params.items() if k != "_meta"}
    forwarded["ref"] = ref
    try:
        result = await upstream_for(server.upstream).call(
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
    caller: Caller, message: dict[str, Any], method: str, params: dict[str, Any], notify: Notify | None
) -> dict[str, Any]:
    started = time.perf_counter()
    name_key = "uri" if method == "resources/read" else "name"
    name = params.get(name_key)
    server_slug, upstream_name, shadow_blocked = "", name if isinstance(name, str) else "", False
    try:
        if not isinstance(name, str) or not name:
            raise RpcError(INVALID_PARAMS, f"{method} needs params.{name_key} (a string).", status=400)
        if not _printable(name):
            raise RpcError(
                INVALID_PARAMS,
                f"Invalid params.{name_key}: it contains a control character (such as NUL) or an unpaired "
                "surrogate; send the exact name from the list.",
                status=400,
            )
        if method == "tools/call" and not isinstance(params.get("arguments", {}), dict):
            raise RpcError(INVALID_PARAMS, "params.arguments must be an object.", status=400)
        built = await catalog_for(caller.config)
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
        if blocked and caller.config.enforcement == "enforce":
            raise RpcError(TOOL_NOT_ALLOWED, "Tool not allowed for this user", status=403)
        shadow_blocked = blocked and caller.config.enforcement == "shadow"
        forwarded = {k: v for k, v in params.items() if k != "_meta"}
        forwarded[name_key] = upstream_name
        progress = (params.get("_meta") or {}).get("progressToken") if isinstance(params.get("_meta"), dict) else None
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
            result = await upstream_for(server.upstream).call(
                method, forwarded, workspace_id=caller.config.id, workspace_slug=caller.config.slug, notify=notify
            )
        except UpstreamError as exc:  # unreachable, busy, malformed, or the upstream's own error (relayed)
            raise RpcError(exc.code, exc.client_message, data=exc.data, status=exc.status) from None
        answer = _finish(caller, result)
        # A tool that ran and failed (isError) is relayed as it is, and recorded apart from a success.
        status = 422 if method == "tools/call" and result.get("isError") is True else 200
        _record(caller, message, method, server_slug, upstream_name, status, None, started, shadow_blocked)
        return answer
    except RpcError as exc:
        _record(caller, message, method, server_slug, upstream_name, exc.status, exc.code, started, shadow_blocked)
        raise
    except asyncio.CancelledError:
        # The client went away, or the server is shutting down: the call may have reached the
        # upstream all the same, so it goes on record (499: closed before the answer).
        _record(caller, message, method, server_slug, upstream_name, CANCELLED, None, started, shadow_blocked)
        raise
    except Exception:
        # A bug, or an answer no check above foresaw: the caller still gets an answer and the
        # call a row. The traceback is logged; arguments, results and headers are not.
        logger.exception("%s through upstream %s failed", method, server_slug or "?")
        _record(caller, message, method, server_slug, upstream_name, 502, INTERNAL_ERROR, started, shadow_blocked)
        raise RpcError(
            INTERNAL_ERROR,
            f"The gateway failed relaying {method} to upstream server {server_slug or '?'}; its log has the details.",
            status=502,
        ) from None


def _record(
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
    recorder.record(
        {
            "record_id": os.urandom(16).hex(),
            "workspace_id": caller.config.id,
            "member_id": token.user_id,
            "member_repr": token.email,
            "token_prefix": token.prefix,
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
            "created_at": timezone.now().isoformat(),
        }
    )
