"""MCPNest project glue: settings, URLs, ASGI and the Celery app."""

from mcpnest.celery import app as celery_app

__all__ = ["celery_app"]
