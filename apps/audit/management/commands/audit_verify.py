"""Verify a workspace's audit hash chains: exit 0 when intact, 1 naming the first broken row."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.audit import chain
from apps.workspaces.models import Workspace


class Command(BaseCommand):
    help = "Recompute every audit row hash of a workspace (events and tool calls) and check the links."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="workspace slug, or 'global' for sign-in events outside workspaces")

    def handle(self, *args, slug: str, **options):
        if slug == "global":
            workspace_id = None
        else:
            workspace = Workspace.objects.filter(slug=slug).first()
            if workspace is None:
                raise CommandError(f"No workspace with slug {slug!r}.")
            workspace_id = workspace.pk
        broken = False
        checked = 0
        for chain_obj, model in chain.iter_chains(workspace_id):
            result = chain.verify_chain(chain_obj, model)
            checked += 1
            if isinstance(result, chain.Break):
                self.stderr.write(f"BROKEN {slug}: {result}")
                broken = True
            else:
                self.stdout.write(
                    f"OK {slug} {chain_obj.stream}: {result.rows} rows verified "
                    f"(from seq {result.start_seq + 1}), head {result.head_hash}"
                )
        if not checked:
            self.stdout.write(f"OK {slug}: no audit rows yet")
        if broken:
            raise SystemExit(1)
