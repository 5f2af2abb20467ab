"""Stream a workspace's audit rows (with their hashes) as JSON Lines or CSV to stdout."""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware

from apps.audit import export
from apps.audit.export import ExportKind, ExportVia
from apps.audit.models import AuditEvent, ToolCall
from apps.audit.services import audit_export_begin
from apps.workspaces.models import Workspace

KINDS = {"events": ExportKind.EVENTS, "calls": ExportKind.TOOL_CALLS, "all": ExportKind.ALL}


def parse_since(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since takes an ISO date or date-time such as 2026-01-31 (got {value!r}).")
        moment = datetime(day.year, day.month, day.day)
    return make_aware(moment) if moment.tzinfo is None else moment


class Command(BaseCommand):
    help = "Export audit events and/or tool calls with chain hashes, so an auditor can re-verify offline."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--format", choices=export.FORMATS, default="jsonl")
        parser.add_argument("--since", help="only rows at or after this ISO date/date-time")
        parser.add_argument("--kind", choices=list(KINDS), default="all")

    def handle(self, *args, slug: str, format: str, since: str | None, kind: str, **options):
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise CommandError(f"No workspace with slug {slug!r}.")
        if format == "csv" and kind == "all":
            raise CommandError("CSV holds one kind of row; add --kind events or --kind calls.")
        models = {"events": [AuditEvent], "calls": [ToolCall], "all": [AuditEvent, ToolCall]}[kind]
        moment = parse_since(since) if since else None
        # An operator at the shell: no acting user. Recorded before the rows stream, so the
        # export names itself.
        audit_export_begin(
            workspace=workspace,
            actor=None,
            kind=KINDS[kind],
            fmt=format,
            filters={"since": since},
            via=ExportVia.CLI,
        )
        for model in models:
            queryset = model.objects.filter(workspace=workspace).order_by("seq")
            if moment is not None:
                queryset = queryset.filter(created_at__gte=moment)
            for chunk in export.stream(queryset, format):
                self.stdout.write(chunk, ending="")
