"""What every portal view shares: the workspace decorator, turning service refusals into
messages, paging without COUNT, secrets shown once, and confirmation pages."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from apps.core import crypto
from apps.core.errors import RuleViolation
from apps.rbac.access import Access, RoleRequired, workspace_for
from apps.rbac.roles import Capability, Role
from apps.sso.selectors import sso_session_blocks
from apps.sso.views import sso_required_response
from apps.workspaces.models import Workspace

T = TypeVar("T")
PAGE_SIZE = 50

PAGE_METHODS = ("GET", "HEAD", "POST")
ACTION_METHODS = ("POST",)


# --- Shared helpers -----------------------------------------------------------------


def workspace_view(capability: Capability = Capability.VIEW_WORKSPACE, *, methods: Sequence[str] = PAGE_METHODS):
    """Sign-in required; the workspace comes from the access gate; then the method is checked.

    The gate runs before the method check so that outsiders get the same 404 for every
    URL of a workspace, whatever the method.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @functools.wraps(view)
        def wrapper(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
            try:
                access = workspace_for(user=request.user, slug=slug, capability=capability)
            except RoleRequired as refused:
                context = workspace_context(refused.access, message=refused.message)
                return render(request, "portal/forbidden.html", context, status=403)
            # "SSO required": a member whose session did not sign in through the workspace's
            # IdP stops here (staff who are not members are not members, and pass).
            if access.membership is not None and sso_session_blocks(request=request, workspace=access.workspace):
                return sso_required_response(request, access.workspace)
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            return view(request, access, **kwargs)

        return wrapper

    return decorate


def attempt(request: HttpRequest, call: Callable[[], T], *, form: forms.Form | None = None) -> tuple[bool, T | None]:
    """Run a service call; a refusal becomes form errors (or messages) instead of a 500.

    Returns (True, result) on success and (False, None) when the service said no.
    """
    try:
        return True, call()
    except RuleViolation as exc:
        _report(request, form, None, [str(exc)])
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                _report(request, form, field, errors)
        else:
            _report(request, form, None, exc.messages)
    return False, None


def _report(request: HttpRequest, form: forms.Form | None, field: str | None, errors: list[str]) -> None:
    if field == NON_FIELD_ERRORS:
        field = None
    elif field is not None and (form is None or field not in form.fields):
        # A field the page has no input for: name it so the message still makes sense.
        errors = [f"{field.replace('_', ' ').capitalize()}: {error}" for error in errors]
        field = None
    if form is not None:
        form.add_error(field, errors)
        return
    for error in errors:
        messages.error(request, error)


@dataclass(frozen=True)
class Page:
    rows: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_of(queryset: QuerySet, request: HttpRequest, size: int = PAGE_SIZE) -> Page:
    """One page of an ordered queryset without a COUNT: fetch size + 1 rows to see if more follow."""
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    offset = (number - 1) * size
    rows = list(queryset[offset : offset + size + 1])
    return Page(rows=rows[:size], number=number, has_next=len(rows) > size)


def workspace_context(access: Access, **extra: Any) -> dict[str, Any]:
    return {"access": access, "workspace": access.workspace, "role_label": role_label(access.role), **extra}


def role_label(role: str | None) -> str:
    return Role(role).label if role in Role.values else "Operator"


def gateway_url(request: HttpRequest, workspace: Workspace) -> str:
    return request.build_absolute_uri(reverse("gateway", kwargs={"slug": workspace.slug}))


def hold_secret(request: HttpRequest, key: str, raw: str) -> None:
    """Keep a new raw secret for the page the POST redirects to (Post/Redirect/Get).

    Encrypted, because the session is a database row; ``take_secret`` removes it.
    """
    request.session[key] = crypto.encrypt(raw)


def take_secret(request: HttpRequest, key: str) -> str | None:
    """The secret held for this page, once: it leaves the session as it is shown."""
    if request.method != "GET":  # a HEAD would use it up without showing it
        return None
    sealed = request.session.pop(key, None)
    if sealed is None:
        return None
    try:
        return crypto.decrypt(sealed)
    except crypto.DecryptionError:  # the encryption keys rotated in between: nothing to show
        return None


# --- Confirmations ----------------------------------------------------------------

CONFIRM_FIELD, CONFIRM_VALUE = "confirm", "yes"


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation page (portal/confirm.html) asks before a destructive POST."""

    question: str
    button: str  # the confirming button's label, e.g. "Remove carol@example.com"
    cancel: str  # where Cancel leads
    consequence: str = ""
    facts: tuple[tuple[str, str], ...] = ()


def when(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return timezone.localtime(moment).strftime(fmt) if moment else "never"


def confirmed(request: HttpRequest) -> bool:
    """Whether this is the POST of a confirmation page; anything else must change nothing."""
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == CONFIRM_VALUE


def ask(
    request: HttpRequest,
    context: dict[str, Any],
    confirmation: Confirmation,
    *,
    template: str = "portal/confirm.html",
) -> HttpResponse:
    """The confirmation page; after a POST that did not confirm, it also says so."""
    if request.method == "POST":
        messages.error(
            request, f"Nothing was changed: this needs confirming. Press “{confirmation.button}” below, or Cancel."
        )
    return render(request, template, {**context, "confirm": confirmation})


def refused_without(request: HttpRequest, access: Access, capability: Capability) -> bool:
    """True (with the reason as a message) when the actor's role lacks ``capability``."""
    ok, _ = attempt(request, lambda: access.require(capability))
    return not ok
