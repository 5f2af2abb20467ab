"""The demo's catalogue, offline: the official registry's 2025-12-18 snapshot and the awesome
list that ship with the tests, indexed once (an empty catalogue only), and a starter pack."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.marketplace.models import Collection, CollectionItem, Server
from apps.marketplace.services import awesome_merge, registry_index

DATA = Path(settings.BASE_DIR) / "tests" / "marketplace" / "data"
SNAPSHOT = DATA / "official-registry-servers-2025-12-18.json.gz"
AWESOME = DATA / "awesome-mcp-servers-with-stars-2026-06-15.json.gz"
STARTER = ("io.github.github/github-mcp-server", "com.notion/mcp", "io.github.upstash/context7")


class Command(BaseCommand):
    help = "Index the bundled registry snapshot and awesome list when the marketplace is empty (for make run)."

    def handle(self, *args, **options):
        if Server.objects.exists():
            self.stdout.write("The marketplace already has servers: nothing to do.")
            return
        run = registry_index(file=SNAPSHOT)
        merged = awesome_merge(path=AWESOME)
        with transaction.atomic():
            pack = Collection.objects.create(
                slug="starter",
                title="Starter pack",
                description="Code, docs and notes: three servers most teams add first.",
                kind=Collection.Kind.STARTER_PACK,
                published=True,
            )
            servers = Server.objects.listed().filter(name__in=STARTER)
            CollectionItem.objects.bulk_create(
                CollectionItem(collection=pack, server=server, position=STARTER.index(server.name))
                for server in servers
            )
        self.stdout.write(
            f"{run.written} registry versions, {merged.added} servers from the awesome list, a starter pack."
        )
