"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Serve with ``daphne mcpnest.asgi:application``.
"""

import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpnest.settings.base")

# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.gateway.asgi import PATH_PREFIX, GatewayASGIHandler  # noqa: E402
from apps.gateway.runtime.recorder import recorder  # noqa: E402
from mcpnest.routing import websocket_urlpatterns  # noqa: E402

gateway_asgi_app = GatewayASGIHandler()
# Start replaying the audit spool now: rows a crashed process left behind reach the
# database at start-up, not only after this process's first call.
recorder.start()


async def http_app(scope, receive, send):
    """Gateway requests skip the portal's middleware (see apps.gateway.asgi)."""
    app = gateway_asgi_app if scope["path"].startswith(PATH_PREFIX) else django_asgi_app
    await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What is loaded by now (Django, the apps, the URLconf, the MCP SDK) lives as long as the
# process. Freeze it out of the cyclic GC, whose full collections would otherwise scan it
# all again and again under load: 50-100 ms pauses every few seconds.
import_module(settings.ROOT_URLCONF)  # the URLconf and every view: the first request would load them
gc.freeze()
