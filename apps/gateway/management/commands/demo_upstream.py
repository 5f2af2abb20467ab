"""``manage.py demo_upstream [--port 8765]``: serve the demo's MCP server on 127.0.0.1 (``make run`` starts it)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.gateway import demo_upstream


class Command(BaseCommand):
    help = "Serve the demo MCP server (echo, add, word_count, utc_now) on 127.0.0.1 for `make run`."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=demo_upstream.PORT)

    def handle(self, *args, port: int, **options) -> None:
        self.stdout.write(f"Demo MCP server on http://{demo_upstream.HOST}:{port}/mcp")
        demo_upstream.serve(port)
