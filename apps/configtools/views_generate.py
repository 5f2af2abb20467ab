"""/tools/generate/: describe a server, get its code once it has compiled and listed its
tools. Signed-in users only, each seeing only their own history."""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from apps.configtools import services
from apps.configtools.composer import CLIENT_LABELS, CONFIG_FILES
from apps.configtools.models import Generation
from apps.core.errors import RuleViolation

HISTORY = 50


class GenerateForm(forms.Form):
    prompt = forms.CharField(
        label="What should the server do?",
        max_length=500,
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": "Lists GitHub issues, creates issues and searches pull requests."}
        ),
    )
    language = forms.ChoiceField(choices=Generation.Language.choices, initial=Generation.Language.TYPESCRIPT)


def generation_for(*, user, pk: int) -> Generation:
    """The user's own generation; 404 alike for another's and for none."""
    found = Generation.objects.filter(user=user, pk=pk).first()
    if found is None:
        raise Http404("No such generation in your history.")
    return found


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def generate(request: HttpRequest) -> HttpResponse:
    form = GenerateForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            generation = services.generation_run(
                actor=request.user, prompt=form.cleaned_data["prompt"], language=form.cleaned_data["language"]
            )
        except services.RateLimited as exc:
            form.add_error(None, str(exc))
            status = 429
        except RuleViolation as exc:
            form.add_error(None, str(exc))
            status = 400
        else:
            return redirect("configtools:generation", pk=generation.pk)
    used, limit = services.generation_quota(request.user)
    history = Generation.objects.filter(user=request.user).only(
        "pk", "name", "prompt", "language", "status", "engine", "created_at"
    )[:HISTORY]
    return render(
        request,
        "configtools/generate.html",
        {"tab": "generate", "form": form, "history": history, "used": used, "limit": limit},
        status=status,
    )


@login_required
@require_safe
def generation(request: HttpRequest, pk: int) -> HttpResponse:
    found = generation_for(user=request.user, pk=pk)
    install = found.install or {}
    configs = [
        (client, CLIENT_LABELS.get(client, client), CONFIG_FILES.get(client, ""), json.dumps(config, indent=2))
        for client, config in (install.get("configs") or {}).items()
    ]
    files = [(name, json.dumps(content, indent=2)) for name, content in (install.get("files") or {}).items()]
    return render(
        request,
        "configtools/generate_detail.html",
        {
            "tab": "generate",
            "generation": found,
            "checked": found.status == Generation.Status.CHECKED,
            "configs": configs,
            "files": files,
            "steps": "\n".join(install.get("steps") or []),
            "claude_code_command": install.get("claude_code_command", ""),
            "filename": "src/index.ts" if found.language == Generation.Language.TYPESCRIPT else "server.py",
        },
    )
