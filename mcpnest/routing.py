"""WebSocket routes: the hosted servers' live deploy consoles."""

from django.urls import path

from apps.hosting.consumers import InstanceConsole

websocket_urlpatterns = [
    path("ws/w/<str:slug>/instances/<int:instance_id>/console/", InstanceConsole.as_asgi()),
]
