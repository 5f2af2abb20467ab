"""Write every audit chain's signed head (one JSON line each) to the head export sink."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.audit.services import audit_heads_export


class Command(BaseCommand):
    help = (
        "Append every audit chain's signed head to MCPNEST_AUDIT_HEAD_EXPORT (the mcpnest.audit.heads "
        "logger, or a file). Keep them where the database's administrators cannot write; "
        "'audit_verify SLUG --heads FILE' then detects rows cut off a chain."
    )

    def add_arguments(self, parser):
        parser.add_argument("--to", dest="sink", help="'log' or a file path (default: MCPNEST_AUDIT_HEAD_EXPORT)")

    def handle(self, *args, sink: str | None, **options):
        sink = sink or settings.MCPNEST_AUDIT_HEAD_EXPORT
        lines = audit_heads_export(sink=sink)
        where = "the mcpnest.audit.heads log" if sink == "log" else sink
        self.stdout.write(f"Exported {len(lines)} chain heads to {where}.")
