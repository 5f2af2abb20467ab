"""The audit trail and the tool-call log: filtered lists and audited, streamed exports."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.audit import export, selectors
from apps.audit.export import ExportKind, ExportVia
from apps.audit.models import AuditEvent, ChainedRecord, ToolCall
from apps.audit.services import audit_export_begin
from apps.core.http import client_ip
from apps.portal.forms import AuditFilterForm, DateRangeForm, ToolCallFilterForm
from apps.portal.views.base import page_of, workspace_context, workspace_view
from apps.rbac.access import Access
from apps.rbac.roles import Capability

# --- Audit trail --------------------------------------------------------------------


def _trail(
    request: HttpRequest, access: Access, *, model: type[ChainedRecord], form: DateRangeForm, template: str
) -> HttpResponse:
    """One page of the workspace's ``model`` rows matching ``form``, newest first."""
    rows = model.objects.none()
    if form.is_valid():
        rows = selectors.records_newest_first(workspace=access.workspace, model=model, lookups=form.filters())
    context = workspace_context(access, form=form, page=page_of(rows, request), formats=export.FORMATS)
    return render(request, template, context)


@workspace_view(Capability.VIEW_AUDIT, methods=("GET", "HEAD"))
def audit(request: HttpRequest, access: Access) -> HttpResponse:
    return _trail(request, access, model=AuditEvent, form=AuditFilterForm(request.GET), template="portal/audit.html")


@workspace_view(Capability.VIEW_AUDIT, methods=("GET",))
def audit_export(request: HttpRequest, access: Access) -> HttpResponse:
    return _export(request, access, model=AuditEvent, form=AuditFilterForm(request.GET), back="portal:audit")


def _export(
    request: HttpRequest, access: Access, *, model: type[ChainedRecord], form: DateRangeForm, back: str
) -> HttpResponse:
    """Stream the workspace's ``model`` rows matching ``form`` as a download; the export is audited."""
    workspace = access.workspace
    fmt = request.GET.get("format", "")
    if fmt not in export.FORMATS or not form.is_valid():
        messages.error(request, f"Choose valid filters and one of: {', '.join(export.FORMATS)}.")
        return redirect(back, slug=workspace.slug)
    # A consistent snapshot that an auditor can re-verify, however long the download takes:
    # the rows up to the chain's head as it is now (so an events export stops before itself).
    last_seq = selectors.chain_head_seq(workspace=workspace, model=model)
    audit_export_begin(
        workspace=workspace,
        actor=request.user,
        kind=ExportKind.of(model),
        fmt=fmt,
        filters=form.cleaned_data,
        via=ExportVia.PORTAL,
        ip=client_ip(request),
    )
    rows = selectors.export_rows(workspace=workspace, model=model, lookups=form.filters(), up_to_seq=last_seq)
    return export.ExportResponse(rows, fmt, label=workspace.slug)


# --- Tool calls ---------------------------------------------------------------------


@workspace_view(Capability.VIEW_AUDIT, methods=("GET", "HEAD"))
def tool_calls(request: HttpRequest, access: Access) -> HttpResponse:
    form = ToolCallFilterForm(request.GET)
    return _trail(request, access, model=ToolCall, form=form, template="portal/tool_calls.html")


@workspace_view(Capability.VIEW_AUDIT, methods=("GET",))
def tool_calls_export(request: HttpRequest, access: Access) -> HttpResponse:
    return _export(request, access, model=ToolCall, form=ToolCallFilterForm(request.GET), back="portal:calls")
