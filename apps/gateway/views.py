"""``/api/gw/<slug>``: the workspace's MCP endpoint (Streamable HTTP, both protocol eras).

Transport only: authentication, sessions, era detection, header checks, JSON or SSE
responses. What each MCP method does lives in ``relay.engine``; the state it all reads
(snapshots, rate limits, the spool, upstream connections) belongs to the process's
``relay.gateway.Gateway``, which the ASGI handler puts in the request's scope.

* 2025 revisions (2025-03-26, 2025-06-18, 2025-11-25): ``initialize`` mints an
  ``Mcp-Session-Id``, a sealed value bound to the token that created it, so any gateway
  process can check it without shared state; ``DELETE`` ends it (recorded in the shared
  store). GET opens the session's stream: resource updates it subscribed to and list
  changes of its workspace's upstreams. Requests an upstream sends while answering a call
  (sampling, elicitation, roots) reach the client on that call's stream; its answer,
  POSTed back, is routed to the upstream (``relay.engine``).
* 2026-07-28: stateless requests carrying ``_meta``; the routing headers are validated
  with the SDK's own ladder (``mcp.shared.inbound``).

Every answer is JSON-RPC, whatever fails: overload, Redis or the database being down, or
a bug (README "Behaviour under faults"). Order of the checks: what costs nothing first,
then the rate limit, and only then anything that may reach the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
)
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from apps.gateway.wire import Reply, Request
from relay import engine
from relay.codec import parse_json, wire_json
from relay.config import WhenDatabaseDown
from relay.engine import RATE_LIMITED, Caller, RpcError
from relay.gateway import Gateway
from relay.protocol import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR
from relay.sessions import ended_key
from relay.spool import SpoolError

logger = logging.getLogger(__name__)

UNAVAILABLE = -32002  # the gateway cannot serve right now (database down, audit spool full)
SESSION_NOT_FOUND = -32001
REQUEST_CANCELLED = -32800  # answered to a call the client cancelled (it ignores the answer)
DEFAULT_LEGACY_VERSION = "2025-03-26"
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


# --- responses ----------------------------------------------------------------------------


_json = Reply.json


def _empty(status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, headers=headers or {}, content_type=None)


def _error(code: int, message: str, *, id: Any = None, status: int = 400, data: Any = None, headers=None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _json({"jsonrpc": "2.0", "id": id, "error": error}, status=status, headers=headers)


def _challenge(gateway: Gateway, slug: str, error: str = "") -> str:
    """RFC 6750 + RFC 9728: where the client finds how to get a token for this gateway,
    and the scope to ask for. No error code when no token came (RFC 6750 §3.1)."""
    metadata = f"{gateway.settings.public_url}/.well-known/oauth-protected-resource/api/gw/{slug}"
    challenge = f'Bearer resource_metadata="{metadata}", scope="{gateway.hooks.required_scope}"'
    return f'{challenge}, error="{error}"' if error else challenge


def _unauthorized(gateway: Gateway, slug: str, message: str, *, ip: str, token_sent: bool = True) -> Reply:
    if token_sent:
        # The server writes no access log (README): a refused token is worth a line of its own,
        # for whoever watches for guessing. Never any of the token itself.
        logger.warning("gateway %s refused a token from %s: %s", slug, ip, message)
    return _error(
        -32001,
        message,
        status=401,
        headers={"WWW-Authenticate": _challenge(gateway, slug, "invalid_token" if token_sent else "")},
    )


def _insufficient_scope(gateway: Gateway, slug: str) -> Reply:
    scope = gateway.hooks.required_scope
    return _error(
        -32001,
        f"The token lacks the {scope!r} scope this gateway needs; authorize the client again.",
        status=403,
        headers={"WWW-Authenticate": _challenge(gateway, slug, "insufficient_scope")},
    )


def _sse_frame(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + wire_json(message) + b"\n\n"


# --- checks -----------------------------------------------------------------------------------


def _origin(value: str) -> str:
    return value.strip().rstrip("/").lower()


def _origin_allowed(request: Request, host: str) -> bool:
    """DNS-rebinding defence: a browser Origin must be exactly one of ours (scheme, host and
    port): the gateway's own (its Host is already checked against ALLOWED_HOSTS) or one of
    CSRF_TRUSTED_ORIGINS."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    origin = _origin(origin)
    if origin == _origin(f"{request.secure_scheme()}://{host}"):
        return True
    return origin in {_origin(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS}


def _accepts(request: Request) -> tuple[bool, bool]:
    accept = request.headers.get("accept", "")
    wildcard = "*/*" in accept
    return wildcard or "application/json" in accept, wildcard or "text/event-stream" in accept


def _is_modern(request: Request, body: dict[str, Any]) -> bool:
    if request.headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS:
        return True
    params = body.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta


# --- the view -------------------------------------------------------------------------------


def body_too_large(limit: int) -> Reply:
    return _error(
        INVALID_REQUEST,
        f"Request body too large: the gateway takes at most {limit} bytes (MCPNEST_GATEWAY_MAX_BODY_BYTES).",
        status=413,
    )


def no_gateway(path: str) -> Reply:
    return _error(INVALID_REQUEST, f"No gateway at {path}: gateway URLs are /api/gw/<workspace slug>.", status=404)


def overloaded() -> Reply:
    return _unavailable("The gateway is at capacity; retry in a moment.", retry_after=1)


def _rate_limited(limit: int, retry_after: int) -> Reply:
    return _error(
        RATE_LIMITED,
        f"Rate limit exceeded: {limit} requests per minute per client. Retry in {retry_after} s.",
        status=429,
        headers={"Retry-After": str(retry_after)},
    )


def _unavailable(message: str, *, retry_after: int = 5, id: Any = None) -> Reply:
    return _error(UNAVAILABLE, message, id=id, status=503, headers={"Retry-After": str(retry_after)})


RETRY_SOON = {"Retry-After": "1"}
DATABASE_DOWN = "The gateway's database is not answering; retry shortly."


def outside_asgi(request: HttpRequest, slug: str) -> Reply:
    """What Django's own handler answers at ``/api/gw/<slug>`` (a WSGI server, the test
    client): the gateway runs only in ``mcpnest.asgi``, which serves it itself."""
    reply = _unavailable("The gateway runs only under mcpnest.asgi (an ASGI server such as uvicorn).")
    return HttpResponse(reply.body, status=reply.status, headers=reply.headers, content_type=reply.content_type)


async def endpoint(request: Request, slug: str, gateway: Gateway) -> Reply | CallAnswer:
    try:
        return await _endpoint(request, slug, gateway)
    except asyncio.CancelledError:
        raise
    except SpoolError as exc:
        logger.error("gateway call refused: %s", exc)
        return _unavailable("The gateway cannot record calls right now (its audit spool is full); retry shortly.")
    except Exception:
        # Never an HTML error page or a traceback: a JSON-RPC error, and the details in the log.
        logger.exception("gateway request failed")
        return _error(INTERNAL_ERROR, "Internal error in the gateway; it has been logged.", status=500)


async def _endpoint(request: Request, slug: str, gateway: Gateway) -> Reply | CallAnswer:
    host = request.host()
    if host is None:
        return _error(INVALID_REQUEST, "Host not allowed.", status=400)
    if not _origin_allowed(request, host):
        return _error(INVALID_REQUEST, "Origin not allowed.", status=403)
    if request.method not in ("POST", "GET", "DELETE"):
        return _empty(405, {"Allow": "POST, GET, DELETE"})

    # The rate limit comes before anything that may reach the database: a workspace this
    # process knows is limited per client by its own setting; anything else (an unknown or
    # not yet loaded slug) by the pre-authentication limit per client IP first.
    ip = request.client_ip()
    session_id = request.headers.get("mcp-session-id", "")
    session_key = ended_key(session_id) if "mcp-session-id" in request.headers else None
    known, config = gateway.snapshots.cached_workspace(slug)
    if known and config is None:
        return _error(INVALID_REQUEST, f"No gateway at /api/gw/{slug}.", status=404)
    if not known:
        preauth = gateway.settings.preauth_rate_limit
        hit = await gateway.shared.hit(f"gw:rl:preauth:{ip}", limit=preauth, session_key=None)
        if not hit.allowed:
            return _rate_limited(preauth, hit.retry_after)
    try:
        config = await gateway.snapshots.workspace(slug)
    except Exception:
        logger.exception("loading workspace %s failed", slug)
        return _unavailable(DATABASE_DOWN)
    if config is None:
        return _error(INVALID_REQUEST, f"No gateway at /api/gw/{slug}.", status=404)
    hit = await gateway.shared.hit(f"gw:rl:{slug}:{ip}", limit=config.rate_limit_per_minute, session_key=session_key)
    if not hit.allowed:
        return _rate_limited(config.rate_limit_per_minute, hit.retry_after)
    if not gateway.snapshots.database_ok and gateway.settings.when_database_down is WhenDatabaseDown.REFUSE:
        return _unavailable(DATABASE_DOWN)

    if request.query_has("access_token"):
        # RFC 6750 §2.3 tokens land in logs and histories: refused, not read (OAuth 2.1).
        return _error(
            INVALID_REQUEST, "Tokens in the query string are refused: send Authorization: Bearer <token>.", status=400
        )
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return _unauthorized(
            gateway,
            slug,
            "Missing bearer token: sign in with OAuth, or send Authorization: Bearer mng_...",
            ip=ip,
            token_sent=False,
        )
    try:
        token = await gateway.snapshots.token(raw.strip())
    except Exception:
        logger.exception("loading a token failed")
        return _unavailable(DATABASE_DOWN)
    # An OAuth token's workspace is its audience (RFC 8707): one for another gateway fails here.
    if token is None or token.workspace_id != config.id:
        return _unauthorized(gateway, slug, "Invalid, expired or revoked token for this workspace.", ip=ip)
    if not token.is_workspace_token and token.user_id not in config.member_ids:
        return _unauthorized(gateway, slug, "The token's owner is no longer a member of this workspace.", ip=ip)
    if token.scopes is not None and gateway.hooks.required_scope not in token.scopes:
        return _insufficient_scope(gateway, slug)
    gateway.recorder.touch(token.id)  # any authenticated request counts as use

    if request.method == "GET":
        return _get(request, gateway=gateway, config=config, token=token, ip=ip, session_ended=hit.session_ended)
    if request.method == "DELETE":
        if request.headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS:
            return _empty(405, {"Allow": "POST"})
        if not session_id:
            return _error(INVALID_REQUEST, "DELETE needs the Mcp-Session-Id header of the session to end.")
        if hit.session_ended or gateway.sessions.read(session_id, token.id) is None:
            return _error(SESSION_NOT_FOUND, "Session not found.", status=404)
        await gateway.shared.end_session(ended_key(session_id))
        return _empty(204)
    return await _post(
        request,
        gateway=gateway,
        config=config,
        token=token,
        ip=ip,
        session_id=session_id,
        session_ended=hit.session_ended,
    )


async def _post(request, *, gateway, config, token, ip, session_id, session_ended) -> Reply | CallAnswer:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _error(INVALID_REQUEST, "Content-Type must be application/json.", status=415)
    wants_json, wants_sse = _accepts(request)
    if not wants_json or not wants_sse:
        return _error(INVALID_REQUEST, "Accept must list both application/json and text/event-stream.", status=406)
    try:
        body = parse_json(request.body)
    except (ValueError, RecursionError) as exc:
        return _error(PARSE_ERROR, f"Parse error: the body is not valid JSON ({exc}).")
    if isinstance(body, list):
        return _error(INVALID_REQUEST, "Batches are not supported: send one JSON-RPC message per POST.")
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        return _error(INVALID_REQUEST, 'Invalid request: expected one JSON-RPC 2.0 object with "jsonrpc": "2.0".')
    message_id = body.get("id")
    has_id = "id" in body
    method = body.get("method")
    if has_id and (message_id is None or isinstance(message_id, bool) or not isinstance(message_id, str | int)):
        return _error(INVALID_REQUEST, "Invalid request: id must be a string or an integer.")
    is_reply = method is None and has_id and ("result" in body or "error" in body)
    if method is None and not is_reply:
        return _error(INVALID_REQUEST, "Invalid request: method is missing.", id=message_id)
    if not is_reply and not isinstance(method, str):
        return _error(INVALID_REQUEST, "Invalid request: method must be a string.", id=message_id)

    if _is_modern(request, body):
        if is_reply:  # 2026-07-28 clients answer input requests in their next request, never by POST
            return _error(INVALID_REQUEST, "A 2026-07-28 client sends no JSON-RPC responses.", id=message_id)
        return await _post_modern(
            request, body, gateway=gateway, config=config, token=token, ip=ip, wants_sse=wants_sse
        )

    # --- 2025 revisions -----------------------------------------------------------------
    if method == "initialize":
        if not has_id:
            return _error(INVALID_REQUEST, "initialize must be a request (with an id).")
        params = body.get("params") if isinstance(body.get("params"), dict) else {}
        client = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        version, result = engine.initialize_result(config, params.get("protocolVersion"))
        declared = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
        takes = sorted(name for name in ("sampling", "elicitation", "roots") if isinstance(declared.get(name), dict))
        new_session = gateway.sessions.mint(token.id, version, client, takes)
        return _json({"jsonrpc": "2.0", "id": message_id, "result": result}, headers={"Mcp-Session-Id": new_session})
    if not session_id:
        return _error(INVALID_REQUEST, "Missing Mcp-Session-Id header: send initialize first.", id=message_id)
    session = None if session_ended else gateway.sessions.read(session_id, token.id)
    if session is None:
        return _error(SESSION_NOT_FOUND, "Session not found: initialize a new session.", id=message_id, status=404)
    version = request.headers.get("mcp-protocol-version") or DEFAULT_LEGACY_VERSION
    if version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return _error(
            INVALID_REQUEST,
            f"Unsupported MCP-Protocol-Version {version!r}; supported: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)}.",
            id=message_id,
        )
    caller = _legacy_caller(session, config=config, token=token, ip=ip, version=version)
    if not has_id:  # notifications (initialized, cancelled, progress, …)
        await gateway.engine.client_notification(caller=caller, notification=body)
        return _empty(202)
    if is_reply:
        # The client's answer to a request an upstream sent it through us (sampling, elicitation).
        if await gateway.engine.route_reply(caller=caller, reply=body):
            return _empty(202)
        return _error(INVALID_REQUEST, f"No request of this gateway has the id {message_id!r}.", id=message_id)
    return await _answer(gateway, caller, body, wants_sse=wants_sse)


def _legacy_caller(session: dict[str, Any], *, config, token, ip: str, version: str) -> Caller:
    capabilities = session.get("c")
    return Caller(
        token=token,
        config=config,
        ip=ip,
        protocol_version=version,
        modern=False,
        # The audit trail names a session by its random part: short, stable, and no use to anyone else.
        client_name=session.get("n", ""),
        client_version=session.get("cv", ""),
        session_id=session.get("r", ""),
        client_capabilities=frozenset(capabilities) if isinstance(capabilities, list) else frozenset(),
    )


KEEP_ALIVE_SECONDS = 15.0


def _get(request, *, gateway, config, token, ip, session_ended) -> Reply:
    """A 2025-era session's standalone stream: resource updates and list changes."""
    if request.headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS:
        return _empty(405, {"Allow": "POST"})
    if not _accepts(request)[1]:
        return _error(INVALID_REQUEST, "Accept must list text/event-stream.", status=406)
    session_id = request.headers.get("mcp-session-id", "")
    if not session_id:
        return _error(INVALID_REQUEST, "GET needs the Mcp-Session-Id header of an initialized session.")
    session = None if session_ended else gateway.sessions.read(session_id, token.id)
    if session is None:
        return _error(SESSION_NOT_FOUND, "Session not found: initialize a new session.", status=404)
    version = session.get("v") or DEFAULT_LEGACY_VERSION
    caller = _legacy_caller(session, config=config, token=token, ip=ip, version=version)
    streams, session_key = gateway.engine.streams, (config.id, caller.session_id)
    queue = streams.open(session_key)

    async def stream():
        try:
            yield b": stream open\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"  # proxies close streams that stay silent
                    continue
                yield _sse_frame(message)
        finally:
            streams.close(session_key, queue)

    return Reply(stream=stream(), content_type="text/event-stream", headers=dict(SSE_HEADERS))


async def _post_modern(request, body, *, gateway, config, token, ip, wants_sse) -> Reply | CallAnswer:
    message_id = body.get("id")
    if "id" not in body:
        rejection = unsupported_protocol_version_rejection(request.headers.get("mcp-protocol-version", ""))
        if rejection is not None:
            return _rejection(rejection, None)
        return _empty(202)
    duplicated = find_duplicated_routing_header(
        (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in request.raw_headers
    )
    if duplicated is not None:
        return _rejection(
            InboundLadderRejection(code=-32020, message=f"{duplicated} header appears more than once"), message_id
        )
    verdict = classify_inbound_request(body, headers=request.headers)
    if isinstance(verdict, InboundLadderRejection):
        return _rejection(verdict, message_id)
    client = verdict.client_info if isinstance(verdict.client_info, dict) else {}
    caller = Caller(
        token=token,
        config=config,
        ip=ip,
        protocol_version=verdict.protocol_version,
        modern=True,
        client_name=str(client.get("name", "")),
        client_version=str(client.get("version", "")),
    )
    if body["method"] == "subscriptions/listen":
        return await _listen(gateway, caller, body)
    return await _answer(gateway, caller, body, wants_sse=wants_sse)


async def _listen(gateway: Gateway, caller: Caller, body: dict[str, Any]) -> Reply:
    """A 2026-07-28 client's subscriptions/listen: its response is the stream of the list
    changes and resource updates it asked for, acknowledged first."""
    try:
        listener = await gateway.engine.open_listen(caller, body)
    except RpcError as exc:
        reply, status = _reply(caller, body.get("id"), exc)
        return _json(reply, status=status)

    async def stream():
        try:
            yield _sse_frame(listener.acknowledgement())
            while True:
                try:
                    message = await asyncio.wait_for(listener.queue.get(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield _sse_frame(message)
        finally:
            gateway.engine.streams.stop_listening(listener)

    return Reply(stream=stream(), content_type="text/event-stream", headers=dict(SSE_HEADERS))


def _rejection(rejection: InboundLadderRejection, message_id: Any) -> Reply:
    status = ERROR_CODE_HTTP_STATUS.get(rejection.code, 400)
    return _error(rejection.code, rejection.message, id=message_id, status=status, data=rejection.data)


def _reply(caller: Caller, message_id: Any, outcome: dict[str, Any] | RpcError) -> tuple[dict[str, Any], int]:
    if isinstance(outcome, RpcError):
        error: dict[str, Any] = {"code": outcome.code, "message": outcome.message}
        if outcome.data is not None:
            error["data"] = outcome.data
        # The 2026-07-28 transport maps some error codes to HTTP statuses; the 2025 one answers
        # 200, but for "busy, retry later" (no upstream slot in time): 503 in both eras.
        if outcome.status == 503:
            status = 503
        else:
            status = ERROR_CODE_HTTP_STATUS.get(outcome.code, 200) if caller.modern else 200
        return {"jsonrpc": "2.0", "id": message_id, "error": error}, status
    return {"jsonrpc": "2.0", "id": message_id, "result": outcome}, 200


async def _answer(gateway: Gateway, caller: Caller, body: dict[str, Any], *, wants_sse: bool) -> Reply | CallAnswer:
    """The answer to a request; a recorded call's is worked out while it is sent (``CallAnswer``)."""
    message_id = body.get("id")
    if body["method"] in engine.RECORDED_METHODS and not gateway.recorder.has_room():
        # Never answer a call that could not be put on record: refuse it before it reaches upstream.
        return _unavailable(
            "The gateway cannot record calls right now (its audit spool is full); retry shortly.", id=message_id
        )
    if body["method"] not in engine.RECORDED_METHODS:
        outcome = await _run(gateway, caller, body, None)
        if isinstance(outcome, engine.Encoded):  # encoded once, sent as it is
            head = b'{"jsonrpc":"2.0","id":' + json.dumps(message_id).encode() + b',"result":'
            return Reply(body=head + outcome.json + b"}")
        reply, status = _reply(caller, message_id, outcome)
        return _json(reply, status=status, headers=RETRY_SOON if status == 503 else None)

    return CallAnswer(gateway, caller, body, wants_sse=wants_sse)


class _ClientCancel:
    """What ``Engine.in_flight`` holds for a call: the client's ``notifications/cancelled``
    cancels the task running it, and says so (a server's or a disconnect's cancellation is not
    the client's: it goes on up)."""

    __slots__ = ("requested", "task")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.requested = False

    def cancel(self) -> None:
        if not self.requested:  # a second notifications/cancelled is no second cancellation
            self.requested = True
            self.task.cancel()


class CallAnswer:
    """A recorded call, run while its answer is sent: in the request's own task, with no task
    or queue of its own (event-loop turns per call at concurrency 1: 6.2 before, 3.9 with the
    lazy disconnect listener of ``apps.gateway.asgi``; strace). The answer
    is JSON when the call ends without notifications; with the first notification (when the
    client accepts SSE) it becomes an event stream, each notification sent as it comes
    (a slow client slows the upstream's stream, never the gateway's memory). A client that
    disconnects, or a server that stops, cancels the request's task: the call is cancelled
    and still recorded (499) by the engine. The same ``send(send)`` as ``Reply``."""

    __slots__ = ("body", "caller", "gateway", "wants_sse")

    def __init__(self, gateway: Gateway, caller: Caller, body: dict[str, Any], *, wants_sse: bool) -> None:
        self.gateway, self.caller, self.body, self.wants_sse = gateway, caller, body, wants_sse

    async def send(self, send) -> None:
        streaming = False

        async def notify(notification: dict[str, Any]) -> None:
            nonlocal streaming
            if not streaming:
                streaming = True
                headers = [(name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()]
                headers.append((b"content-type", b"text/event-stream"))
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": _sse_frame(notification), "more_body": True})

        message_id = self.body.get("id")
        outcome = await self._outcome(notify if self.wants_sse else None)
        reply, status = _reply(self.caller, message_id, outcome)
        if streaming:
            await send({"type": "http.response.body", "body": _sse_frame(reply)})
        else:
            await _json(reply, status=status, headers=RETRY_SOON if status == 503 else None).send(send)

    async def _outcome(self, notify) -> dict[str, Any] | RpcError:
        task = asyncio.current_task()
        assert task is not None
        cancel = _ClientCancel(task)
        try:
            with self.gateway.engine.in_flight(self.caller, self.body.get("id"), cancel):
                return await _run(self.gateway, self.caller, self.body, notify)
        except asyncio.CancelledError:
            if cancel.requested and task.uncancel() == 0:
                return RpcError(REQUEST_CANCELLED, "Request cancelled.", status=499)
            raise


async def _run(gateway: Gateway, caller: Caller, body: dict[str, Any], notify) -> dict[str, Any] | RpcError:
    """The engine's answer, or the error to send: this never raises (but for cancellation),
    so the response stream always gets its final message."""
    try:
        return await gateway.engine.dispatch(caller, body, notify)
    except RpcError as exc:
        return exc
    except SpoolError as exc:
        logger.error("a call could not be put on record: %s", exc)
        return RpcError(UNAVAILABLE, "The gateway could not record this call; retry shortly.", status=503)
    except Exception:
        logger.exception("gateway method %s failed", body.get("method"))
        return RpcError(INTERNAL_ERROR, "Internal error in the gateway; it has been logged.", status=500)
