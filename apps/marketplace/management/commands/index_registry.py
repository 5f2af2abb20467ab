from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.marketplace.models import IndexRun
from apps.marketplace.services import registry_index


class Command(BaseCommand):
    help = (
        "Index MCP servers from the official registry (MCPNEST_REGISTRY_URL, or --url), or from a file of registry "
        "entries in any of its shapes (--file). From a registry, only what changed since the last run unless --full; "
        "an interrupted run resumes from where it stopped."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--url", help="a registry base URL (it serves /v0.1/servers)")
        source.add_argument(
            "--file", type=Path, help="a JSON file (or .json.gz): a list of entries, or {servers: [...]}"
        )
        parser.add_argument("--full", action="store_true", help="everything, not only what changed since the last run")
        parser.add_argument("--restart", action="store_true", help="do not resume an unfinished run; start over")

    def handle(self, *args, url=None, file=None, full=False, restart=False, **options):
        if file is not None and not file.is_file():
            raise CommandError(f"No such file: {file}")
        run = registry_index(
            url=None if file else (url or settings.MCPNEST_REGISTRY_URL), file=file, full=full, resume=not restart
        )
        for problem in run.problems[:20]:
            self.stderr.write(f"skipped {problem['name'] or '(no name)'}: {problem['reason']}")
        summary = (
            f"{run.source}: {run.seen} entries in {run.pages} pages, {run.written} versions written, "
            f"{run.skipped} skipped"
        )
        if run.status != IndexRun.Status.DONE:
            raise CommandError(f"{summary}; stopped: {run.error} (run it again to resume)")
        self.stdout.write(summary)
