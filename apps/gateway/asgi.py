"""The gateway's ASGI handler: Django's own, without the portal's middleware.

The portal's middleware (sessions, CSRF, messages, allauth, WhiteNoise) is written for
sync code; under ASGI each of them costs a hop to a worker thread on every request. The
gateway authenticates every request by bearer token and uses none of it, so its requests
go through a Django handler with an empty middleware chain: same URLconf, same async view,
no thread hops.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

PATH_PREFIX = "/api/gw/"


class GatewayASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)
