"""The gateway's ASGI application: ``/api/gw/<slug>`` served without Django's handler.

Gateway requests never enter Django's request cycle: no middleware (the portal's is
written for sync code; under ASGI each costs a thread hop per request), no
``request_started``/``request_finished`` signals (Django sends them in a per-request
thread; their receivers tend the connections of a thread the gateway never queries on:
its ORM work runs in pool threads that close their own, ``apps.gateway.host.db_job``), no
``HttpRequest``/``HttpResponse`` (``apps.gateway.wire`` says why). The URLconf still names
the route (``reverse("gateway")``); what Django itself would serve there is a 503.

It also bounds what one process takes on: a body over ``MCPNEST_GATEWAY_MAX_BODY_BYTES``
is refused with 413 before it is read (by its Content-Length, or as soon as a chunked body
passes the limit), and beyond ``MCPNEST_GATEWAY_MAX_IN_FLIGHT`` requests at once the next
one gets 503 with ``Retry-After`` instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import functools
import io
import re
import sys
import time

from django.conf import settings

from apps.gateway import views
from apps.gateway.wire import Request
from relay.gateway import Gateway

PATH_PREFIX = "/api/gw/"


def _memoize_twisted_content_type() -> None:
    """Under daphne, Twisted parses every POST's Content-Type with the ``email`` package
    (to look for form submissions, which ASGI never uses): an eighth of the gateway's CPU
    per call. The parser is a pure function of a header almost always equal to
    ``application/json``, so remember its answers."""
    twisted_http = sys.modules.get("twisted.web.http")  # loaded by daphne before the application
    if twisted_http is None:  # another ASGI server
        return
    parse = getattr(twisted_http, "_parseContentType", None)
    if parse is not None and not hasattr(parse, "cache_info"):
        twisted_http._parseContentType = functools.lru_cache(maxsize=64)(parse)


_memoize_twisted_content_type()


def _refuse_large_bodies_in_daphne() -> None:
    """Daphne reads a whole request body, and queues all of it for the application, before
    the application sees the request: a 100 MB upload would cost 100 MB of memory before
    ``GatewayASGIHandler`` could refuse it. So under daphne a gateway request whose body
    passes ``MCPNEST_GATEWAY_MAX_BODY_BYTES`` (by its Content-Length, or while a chunked body
    arrives) is answered 413 by daphne's request object itself, and the rest of its body is
    read and thrown away, never stored."""
    http_protocol = sys.modules.get("daphne.http_protocol")  # loaded by daphne before the application
    if http_protocol is None or getattr(http_protocol.WebRequest, "_mcpnest_body_limit", False):
        return
    request_class = http_protocol.WebRequest
    got_length, handle_chunk, process = (
        request_class.gotLength,
        request_class.handleContentChunk,
        request_class.process,
    )

    def is_gateway(request) -> bool:
        path = getattr(request.channel, "_path", b"") or b""
        return path.startswith(PATH_PREFIX.encode())

    def refuse(request) -> None:
        request._mcpnest_too_large = True
        request.content = io.BytesIO()  # drop whatever was kept

    def gotLength(self, length):  # Twisted's names
        self._mcpnest_received = 0
        self._mcpnest_too_large = False
        self._mcpnest_limited = is_gateway(self)
        if self._mcpnest_limited and length is not None and length > settings.MCPNEST_GATEWAY_MAX_BODY_BYTES:
            refuse(self)
            return
        got_length(self, length)

    def handleContentChunk(self, data):
        if getattr(self, "_mcpnest_too_large", False):
            return
        if getattr(self, "_mcpnest_limited", False):
            self._mcpnest_received += len(data)
            if self._mcpnest_received > settings.MCPNEST_GATEWAY_MAX_BODY_BYTES:
                refuse(self)
                return
        handle_chunk(self, data)

    def process_limited(self):
        if not getattr(self, "_mcpnest_too_large", False):
            return process(self)
        reply = views.body_too_large(settings.MCPNEST_GATEWAY_MAX_BODY_BYTES)
        self.request_start = time.time()
        self.client_addr = None
        self.handle_reply({"type": "http.response.start", "status": reply.status, "headers": reply.asgi_headers()})
        self.handle_reply({"type": "http.response.body", "body": reply.body})
        return None

    request_class.gotLength = gotLength
    request_class.handleContentChunk = handleContentChunk
    request_class.process = process_limited
    request_class._mcpnest_body_limit = True


_refuse_large_bodies_in_daphne()


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


# How long a request runs before a task listens for its client's disconnect. A client that
# hangs up sooner has its call cancelled at this point, or answered into the void if it is
# done by then: either way the call is on record.
LISTEN_AFTER = 0.05  # seconds
SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # Django's <slug:…> converter, as the URLconf names the route


class GatewayASGIHandler:
    """Serves ``/api/gw/<slug>`` with the process's ``Gateway``; starts it on the first
    request if no lifespan event did. Plain ASGI: see ``apps.gateway.wire`` for why."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.in_flight = 0  # requests this process is working on

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"The gateway serves HTTP only, not {scope['type']}.")
        if not self.gateway.started:
            self.gateway.start()
        limit = settings.MCPNEST_GATEWAY_MAX_BODY_BYTES
        length = None
        for name, value in scope.get("headers") or ():
            if name.lower() == b"content-length":
                length = value
                break
        if length is not None and (not length.isdigit() or int(length) > limit):
            await views.body_too_large(limit).send(send)
            return
        if self.in_flight >= settings.MCPNEST_GATEWAY_MAX_IN_FLIGHT:
            await views.overloaded().send(send)
            return
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send, limit)
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _read_limited(receive, limit: int) -> bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        body = message.get("body", b"")
        if not message.get("more_body", False):  # the usual case: the whole body at once
            if len(body) > limit:
                raise _TooLarge()
            return body
        parts, size = [body], len(body)
        while True:
            if size > limit:
                raise _TooLarge()
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        if size > limit:
            raise _TooLarge()
        return b"".join(parts)

    @staticmethod
    async def _cancel_on_disconnect(receive, task: asyncio.Task) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                task.cancel()
                return

    async def _handle(self, scope, receive, send, limit) -> None:
        try:
            body = await self._read_limited(receive, limit)
        except _Disconnected:
            return
        except _TooLarge:
            await views.body_too_large(limit).send(send)
            return
        slug = scope["path"][len(PATH_PREFIX) :]
        if not SLUG.fullmatch(slug):
            await views.no_gateway(scope["path"]).send(send)
            return
        request = Request.from_scope(scope, body)
        # As Django does: a client that disconnects cancels the view (and its upstream call),
        # which still records the call (status 499). The view runs in the server's own task; a
        # listener task, started once the request has run for LISTEN_AFTER (most answers are
        # out before: no task at all for them), cancels that task, and the cancellation it
        # caused is taken back below. A server that cancels us (at shutdown, once the graceful
        # timeout is over) cancels the view the same way, and that cancellation goes on up.
        task = asyncio.current_task()
        assert task is not None
        listener: asyncio.Task | None = None

        def listen() -> None:
            nonlocal listener
            listener = asyncio.get_running_loop().create_task(self._cancel_on_disconnect(receive, task))

        def listener_cancelled_us() -> bool:
            return listener is not None and listener.done() and not listener.cancelled()

        timer = asyncio.get_running_loop().call_later(LISTEN_AFTER, listen)
        try:
            reply = await views.endpoint(request, slug, self.gateway)
            await reply.send(send)
        except asyncio.CancelledError:
            if listener_cancelled_us() and task.uncancel() == 0:
                return  # the client went away: there is no one to answer
            raise
        else:
            if listener_cancelled_us():
                task.uncancel()  # the listener cancelled us and a callee swallowed it: take it back
        finally:
            # Neither has run since our last await: cancelling them now means the listener never
            # cancels us once we are out of this block (the server's task goes on after us).
            timer.cancel()
            if listener is not None:
                listener.cancel()
