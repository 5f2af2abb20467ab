"""Verify a workspace's audit hash chains: exit 0 when intact, 1 naming the first broken row.

With ``--heads FILE`` (lines written by ``audit_heads`` / the beat task), also check that
every chain still reaches every head exported for it: rows cut off the end of a chain,
with its head rolled back, are found this way and nowhere else. Without a slug, every
workspace named in the heads file is verified.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.audit import chain, heads
from apps.audit.models import ToolCall
from apps.workspaces.models import Workspace


class Command(BaseCommand):
    help = (
        "Recompute every audit row MAC of a workspace (events and tool calls) and check the links; "
        "with --heads FILE, also check the chains against their exported signed heads."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "slug",
            nargs="?",
            help="workspace slug, or 'global' for sign-in events outside workspaces; "
            "leave out with --heads to verify every workspace the heads file names",
        )
        parser.add_argument("--heads", metavar="FILE", help="exported chain heads (JSON lines) to check against")

    def handle(self, *args, slug: str | None, heads: str | None, **options):
        parsed = self._read_heads(heads) if heads else None
        if slug is None:
            if parsed is None:
                raise CommandError(
                    "Name a workspace slug (or 'global'), or give --heads FILE to verify every workspace it names."
                )
            named = sorted(parsed.by_workspace.items(), key=lambda item: (item[0] is None, item[0] or 0))
            targets = [(workspace_id, self._label(workspace_id, lines)) for workspace_id, lines in named]
        elif slug == "global":
            targets = [(None, "global")]
        else:
            workspace = Workspace.objects.filter(slug=slug).first()
            if workspace is None:
                raise CommandError(f"No workspace with slug {slug!r}.")
            targets = [(workspace.pk, slug)]
        broken = False
        if parsed is not None:
            for problem in parsed.problems:
                self.stderr.write(f"BROKEN {heads}: {problem}")
                broken = True
        for workspace_id, label in targets:
            broken |= self._verify_chains(workspace_id, label)
            if parsed is not None:
                broken |= self._check_heads(workspace_id, label, parsed.by_workspace.get(workspace_id, []), heads)
        if broken:
            raise SystemExit(1)

    def _read_heads(self, path: str) -> heads.ParsedHeads:
        try:
            with open(path, encoding="utf-8", errors="replace") as lines:
                return heads.parse(lines)
        except OSError as exc:
            raise CommandError(f"Cannot read the heads file {path!r}: {exc.strerror or exc}") from None

    @staticmethod
    def _label(workspace_id: int | None, lines: list[dict]) -> str:
        if workspace_id is None:
            return "global"
        slug = Workspace.objects.filter(pk=workspace_id).values_list("slug", flat=True).first()
        return slug or f"{lines[-1]['workspace']} (workspace #{workspace_id}, since deleted)"

    def _verify_chains(self, workspace_id: int | None, label: str) -> bool:
        broken = False
        checked = 0
        for chain_obj, model in chain.iter_chains(workspace_id):
            result = chain.verify_chain(chain_obj, model)
            checked += 1
            if isinstance(result, chain.Break):
                self.stderr.write(f"BROKEN {label}: {result}")
                broken = True
            else:
                quarantined = ""
                if model is ToolCall:  # not a break, but rows a reviewer must look at
                    quarantined = f", {result.quarantined} quarantined" + (" (see admin)" if result.quarantined else "")
                self.stdout.write(
                    f"OK {label} {chain_obj.stream}: {result.rows} rows verified "
                    f"(from seq {result.start_seq + 1}){quarantined}, head {result.head_hash}"
                )
        if not checked:
            self.stdout.write(f"OK {label}: no audit rows yet")
        return broken

    def _check_heads(self, workspace_id: int | None, label: str, exported: list[dict], path: str) -> bool:
        if not exported:
            self.stdout.write(f"heads {label}: none exported in {path}; nothing to check against")
            return False
        report = heads.check(workspace_id, exported)
        for problem in report.problems:
            self.stderr.write(f"BROKEN {label}: {problem}")
        if report.problems:
            return True
        newest = ", ".join(f"{stream} seq {v['seq']} at {v['at']}" for stream, v in sorted(report.newest.items()))
        self.stdout.write(f"OK {label} heads: {report.checked} exported heads still in the chains (newest: {newest})")
        return False
