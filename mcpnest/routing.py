"""WebSocket routes. Hosted-server deploy consoles will register here."""

websocket_urlpatterns: list = []
