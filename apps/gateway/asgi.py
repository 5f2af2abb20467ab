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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

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


class GatewayASGIHandler(ASGIHandler):
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
        """ASGIHandler.handle without the signals (see the module docstring)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
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
