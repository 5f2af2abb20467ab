"""The /tools/ pages: the config validator and the scanner, open to everybody signed in or
not (they store nothing). The composer and the generator have their own views."""

from __future__ import annotations

import json

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_safe

from apps.configtools import clients, scanner, validator
from apps.configtools.api.views import ToolsThrottle

MAX_BYTES = validator.MAX_BYTES


class ConfigForm(forms.Form):
    """A config pasted or uploaded; the upload wins when both are given."""

    config = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 18, "class": "code", "spellcheck": "false"})
    )
    file = forms.FileField(required=False, label="Or upload the file")

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_BYTES:
                raise forms.ValidationError(f"The file is larger than {MAX_BYTES // 1024} KB.")
            try:
                data["config"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise forms.ValidationError("The file is not UTF-8 text.") from exc
        text = data.get("config") or ""
        if len(text.encode("utf-8")) > MAX_BYTES:
            raise forms.ValidationError(f"The config is larger than {MAX_BYTES // 1024} KB: paste only the MCP part.")
        if not text.strip():
            raise forms.ValidationError("Paste a config or upload its file.")
        return data


class ValidateForm(ConfigForm):
    client = forms.ChoiceField(required=False, choices=[("", "Detect it"), *clients.CLIENTS.items()], label="Client")
    check_endpoints = forms.BooleanField(
        required=False, label="Also send an MCP initialize to each remote URL (public addresses only)"
    )


class ScanForm(ConfigForm):
    tools = forms.CharField(
        required=False,
        label="Tool metadata (optional): a tools/list result or its tools array, as JSON",
        widget=forms.Textarea(attrs={"rows": 6, "class": "code", "spellcheck": "false"}),
    )

    def clean_tools(self) -> list:
        text = (self.cleaned_data.get("tools") or "").strip()
        if not text:
            return []
        if len(text.encode("utf-8")) > MAX_BYTES:
            raise forms.ValidationError(f"The tool metadata is larger than {MAX_BYTES // 1024} KB.")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}.") from exc
        if isinstance(value, dict) and isinstance(value.get("result"), dict):
            value = value["result"]
        if isinstance(value, dict):
            value = value.get("tools")
        if not isinstance(value, list):
            raise forms.ValidationError("Give a JSON array of tools, or an object with a `tools` array.")
        return value


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "configtools/index.html", {"tab": "index"})


@require_http_methods(["GET", "HEAD", "POST"])
def validate(request: HttpRequest) -> HttpResponse:
    posted = request.method == "POST"
    form = ValidateForm(request.POST if posted else None, request.FILES if posted else None)
    report, throttled = None, False
    if posted and form.is_valid():
        data = form.cleaned_data
        check = data["check_endpoints"]
        if check and not ToolsThrottle().allow_request(request, None):
            # The check sends requests out: the page shares the API's per-IP limit for it.
            check, throttled = False, True
        report = validator.validate(data["config"], client=data["client"] or None, check_endpoints=check)
        if data.get("file") is not None:
            # Show the uploaded text in the box, so that it can be fixed and sent again.
            form = ValidateForm(
                initial={"config": data["config"], "client": data["client"], "check_endpoints": data["check_endpoints"]}
            )
    return render(
        request,
        "configtools/validate.html",
        {"tab": "validate", "form": form, "report": report, "throttled": throttled},
    )


@require_http_methods(["GET", "HEAD", "POST"])
def scan(request: HttpRequest) -> HttpResponse:
    posted = request.method == "POST"
    form = ScanForm(request.POST if posted else None, request.FILES if posted else None)
    findings, error = None, ""
    if posted and form.is_valid():
        data = form.cleaned_data
        try:
            findings = scanner.scan(data["config"], tools=data["tools"])
        except ValueError as exc:
            error = f"The config is not JSON: {exc}. The validator shows where."
        if data.get("file") is not None:
            form = ScanForm(initial={"config": data["config"], "tools": request.POST.get("tools", "")})
    return render(request, "configtools/scan.html", {"tab": "scan", "form": form, "findings": findings, "error": error})
