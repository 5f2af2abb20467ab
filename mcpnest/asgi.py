"""ASGI entry point: the gateway (``apps.gateway.asgi``), the rest of HTTP through Django, WebSockets through Channels.

Serve with ``uvicorn mcpnest.asgi:application`` and the README's options (or daphne).
"""

import atexit
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
from apps.gateway.host import build_gateway  # noqa: E402
from mcpnest.routing import websocket_urlpatterns  # noqa: E402
from relay.gateway import Gateway  # noqa: E402


def build_application(gateway: Gateway):
    """The whole ASGI application around one gateway (tests build their own)."""
    gateway_asgi_app = GatewayASGIHandler(gateway)

    async def http_app(scope, receive, send):
        """Gateway requests skip the portal's middleware (see apps.gateway.asgi)."""
        app = gateway_asgi_app if scope["path"].startswith(PATH_PREFIX) else django_asgi_app
        await app(scope, receive, send)

    async def lifespan(scope, receive, send):
        """For ASGI servers that send lifespan events (uvicorn); daphne does not, so the
        gateway also starts on its first request and stops at the process's exit."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                gateway.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
            "lifespan": lifespan,
        }
    )


gateway = build_gateway()
# Replay the audit spool now: rows a crashed process left behind reach the database at
# start-up, not only after this process's first call. A graceful stop (SIGTERM) writes
# what is spooled; a hard one leaves it for the next process.
gateway.start_recorder()
atexit.register(gateway.stop_sync)
application = build_application(gateway)

# What is loaded by now (Django, the apps, the URLconf, the MCP SDK) lives as long as the
# process. Freeze it out of the cyclic GC, whose full collections would otherwise scan it
# all again and again under load: 50-100 ms pauses every few seconds.
import_module(settings.ROOT_URLCONF)  # the URLconf and every view: the first request would load them
gc.freeze()
