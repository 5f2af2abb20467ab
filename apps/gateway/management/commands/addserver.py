"""Add an upstream MCP server to a workspace's gateway (added and approved, tools pinned)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import RuleViolation
from apps.gateway.services import parse_header, server_add, server_check_run
from apps.workspaces.management.cli import one_line, operator_access, workspace_active


class Command(BaseCommand):
    help = (
        "Add and approve an upstream MCP server: addserver SLUG SERVER_SLUG URL [--prefix P] [--header 'N: v']... "
        "[--timeout SECONDS] [--max-concurrency N]"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="workspace slug")
        parser.add_argument("server_slug")
        parser.add_argument("url")
        parser.add_argument("--prefix", default="", help="prefix for this server's tool names, e.g. gh_")
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="'NAME: value'",
            help="a header sent upstream (credentials); stored encrypted, repeatable",
        )
        parser.add_argument(
            "--timeout",
            type=int,
            default=None,
            metavar="SECONDS",
            help="how long a call may wait on this server (default: MCPNEST_GATEWAY_UPSTREAM_TIMEOUT)",
        )
        parser.add_argument(
            "--max-concurrency",
            type=int,
            default=None,
            metavar="N",
            help="calls to this server in flight at once, per process (default: MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY)",
        )

    def handle(
        self,
        *args,
        slug: str,
        server_slug: str,
        url: str,
        prefix: str,
        header: list[str],
        timeout: int | None,
        max_concurrency: int | None,
        **options,
    ):
        workspace = workspace_active(slug)
        try:
            headers = dict(parse_header(value) for value in header)
            server = server_add(
                access=operator_access(workspace),
                slug=server_slug,
                url=url,
                prefix=prefix,
                headers=headers,
                timeout_seconds=timeout,
                max_concurrency=max_concurrency,
            )
        except (ValidationError, RuleViolation) as exc:
            raise CommandError(one_line(exc)) from None
        if server.checking:
            # With a broker, the approval waits for a worker. A command may wait, and is in no
            # transaction: carry it out here (claimed first, so the worker finds nothing left).
            approved = server_check_run(server_id=server.pk)
            if approved is None:
                self.stdout.write(
                    f"Added {workspace.slug}/{server.slug}; a worker is approving it (pinning its tools)."
                )
                return
            server = approved
        state = "reachable" if server.health_ok else f"NOT reachable ({server.health_detail})"
        self.stdout.write(f"Added {workspace.slug}/{server.slug} ({state}); {server.pins.count()} tools pinned.")
