"""The gateway's ASGI handler: Django's own, without the portal's middleware.

The portal's middleware (sessions, CSRF, messages, allauth, WhiteNoise) is written for
sync code; under ASGI each of them costs a hop to a worker thread on every request. The
gateway authenticates every request by bearer token and uses none of it, so its requests
go through a Django handler with an empty middleware chain: same URLconf, same async view,
no thread hops.

Nor does it send ``request_started``/``request_finished``. Django sends them through
thread-sensitive ``sync_to_async`` inside a per-request ``ThreadSensitiveContext``: a new
thread started and joined for every request. Their receivers reset and close the database
connections of the request's thread, and the gateway never queries on that thread: its
ORM work runs in pool threads that close their own connections (``runtime.state.db_job``).

It also bounds what one process takes on: a body over ``MCPNEST_GATEWAY_MAX_BODY_BYTES``
is refused with 413 before it is read (by its Content-Length, or as soon as a chunked body
passes the limit), and beyond ``MCPNEST_GATEWAY_MAX_IN_FLIGHT`` requests at once the next
one gets 503 with ``Retry-After`` instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import sys
import tempfile
import time

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

from apps.gateway import views
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
        response = views.body_too_large(settings.MCPNEST_GATEWAY_MAX_BODY_BYTES)
        self.request_start = time.time()
        self.client_addr = None
        self.handle_reply(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(b"Content-Type", b"application/json")],
            }
        )
        self.handle_reply({"type": "http.response.body", "body": response.content})
        return None

    request_class.gotLength = gotLength
    request_class.handleContentChunk = handleContentChunk
    request_class.process = process_limited
    request_class._mcpnest_body_limit = True


_refuse_large_bodies_in_daphne()


class _TooLarge(Exception):
    pass


class GatewayASGIHandler(ASGIHandler):
    """Serves the gateway's requests with the process's ``Gateway`` in their scope
    (``views.SCOPE_KEY``); starts it on the first request if no lifespan event did."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway
        self.in_flight = 0  # requests this process is working on

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"The gateway serves HTTP only, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        """ASGIHandler.handle without the signals (see the module docstring), with limits."""
        if not self.gateway.started:
            self.gateway.start()
        scope[views.SCOPE_KEY] = self.gateway
        limit = settings.MCPNEST_GATEWAY_MAX_BODY_BYTES
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self.send_response(views.body_too_large(limit), send)
            return
        if self.in_flight >= settings.MCPNEST_GATEWAY_MAX_IN_FLIGHT:
            await self.send_response(views.overloaded(), send)
            return
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send, limit)
        finally:
            self.in_flight -= 1

    async def _read_limited(self, receive, limit: int):
        # Closed by the request when it is done, as Django's own read_body does.
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")  # noqa: SIM115
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                body_file.close()
                raise _TooLarge()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    async def _handle(self, scope, receive, send, limit) -> None:
        try:
            body_file = await self._read_limited(receive, limit)
        except RequestAborted:
            return
        except _TooLarge:
            await self.send_response(views.body_too_large(limit), send)
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request() -> None:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away while we answered
                await self.send_response(response, send)

        # As Django does: a client that disconnects cancels the view (and its upstream call).
        # And when the server cancels us (daphne does, at shutdown), the view is cancelled and
        # awaited too, so the call's audit row is recorded before the process exits.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()  # a no-op for the one that finished
            try:
                for task in tasks:
                    with contextlib.suppress(RequestAborted, asyncio.CancelledError):
                        await task
            finally:
                body_file.close()
