"""/tools/compose/: pick marketplace servers, name their variables' placeholders, copy one
config per client, share it. Open to everybody, signed in or not.

The page is one POST form (CSRF-protected): "Update" re-renders it, "Share" stores it and
redirects to its link. Placeholders travel in POST bodies, never in URLs, in case somebody
types a value where a name goes (it is refused, but should not land in a log first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from apps.configtools import composer, services
from apps.configtools.composer import CompositionError
from apps.configtools.models import Composition
from apps.marketplace import search
from apps.marketplace.configs import CLIENTS

MAX_RESULTS = 10


@dataclass
class ServerForm:
    name: str
    title: str = ""
    variables: list[dict] = field(default_factory=list)  # name, description, secret, required, value


def choices_from(data) -> tuple[list[services.ServerChoice], str]:
    """The servers and placeholders in a submitted form: ``server`` (repeated), ``add`` and
    ``remove`` (one name each) and ``v:<server>:<VARIABLE>`` fields."""
    names = [name for name in data.getlist("server") if name]
    if data.get("add") and data["add"] not in names:
        names.append(data["add"])
    if data.get("remove"):
        names = [name for name in names if name != data["remove"]]
    names = list(dict.fromkeys(names))[: composer.MAX_SERVERS]
    choices = []
    for name in names:
        prefix = f"v:{name}:"
        variables = {key[len(prefix) :]: value for key, value in data.items() if key.startswith(prefix)}
        choices.append(services.ServerChoice(name=name, variables=variables))
    return choices, " ".join(str(data.get("title", "")).split())[:120]


def _shown(value: str | None, name: str) -> str:
    """What the variable's field shows: the placeholder given, unless it was refused (it may
    be a secret: it is not sent back), then the variable's own name."""
    try:
        return composer.placeholder(value or "", variable=name) if value else name
    except CompositionError:
        return name


def _page(request: HttpRequest, *, choices, title: str, composition: Composition | None = None, error: str = ""):
    forms: list[ServerForm] = []
    configs = []
    if choices:
        try:
            composed = services.composed_servers(choices)
        except CompositionError as exc:
            error = error or str(exc)
            composed = []
        for server in composed:
            forms.append(
                ServerForm(
                    name=server.name,
                    title=str(server.document.get("title") or server.document.get("description") or "")[:200],
                    variables=[
                        {
                            "name": var.name,
                            "description": var.description,
                            "secret": var.secret,
                            "required": var.required,
                            "value": _shown(server.variables.get(var.name), var.name),
                        }
                        for var in composer.declared_variables(server.document)
                    ],
                )
            )
        if composed and not error:
            try:
                configs = [
                    (
                        client,
                        composer.CLIENT_LABELS[client],
                        composer.CONFIG_FILES[client],
                        json.dumps(config, indent=2),
                    )
                    for client, config in composer.compose(composed).items()
                ]
            except CompositionError as exc:
                error = str(exc)
    if error and not forms:
        # Keep what was asked for on the page, so it can be fixed rather than retyped.
        forms = [ServerForm(name=choice.name) for choice in choices]
    # The search box is part of the form (so a search without JavaScript keeps the servers).
    query = search.Search.from_params(request.POST if request.method == "POST" else request.GET)
    results = list(search.search(query)[:MAX_RESULTS]) if query.q else []
    share_url = (
        request.build_absolute_uri(reverse("configtools:composition", args=[composition.share_id]))
        if composition
        else ""
    )
    return render(
        request,
        "configtools/compose.html",
        {
            "tab": "compose",
            "servers": forms,
            "configs": configs,
            "error": error,
            "title": title,
            "composition": composition,
            "share_url": share_url,
            "q": query.q,
            "results": results,
            "clients": CLIENTS,
        },
        status=400 if error and request.method == "POST" else 200,
    )


@require_http_methods(["GET", "HEAD", "POST"])
def compose(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        # ?server=<name> links (from a server's page) start a composition with it.
        choices, title = choices_from(request.GET) if request.GET.getlist("server") else ([], "")
        return _page(request, choices=choices, title=title)
    choices, title = choices_from(request.POST)
    if request.POST.get("action") != "share":
        return _page(request, choices=choices, title=title)
    try:
        composition = services.composition_save(actor=request.user, servers=choices, title=title)
    except CompositionError as exc:
        return _page(request, choices=choices, title=title, error=str(exc))
    return redirect("configtools:composition", share_id=composition.share_id)


@require_safe
def composition(request: HttpRequest, share_id: str) -> HttpResponse:
    found = Composition.objects.filter(share_id=share_id).first()
    if found is None:
        raise Http404("No composition with this link.")
    return _page(request, choices=services.composition_choices(found), title=found.title, composition=found)
