"""Personal API keys, on the account pages: list, create (shown once), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.accounts import services as account_services
from apps.accounts.models import ApiKey
from apps.accounts.selectors import api_keys_of
from apps.core.http import client_ip
from apps.portal.forms import ApiKeyForm
from apps.portal.views.base import Confirmation, ask, confirmed, hold_secret, take_secret, when

NEW_API_KEY = "portal:new-api-key"  # session key of a raw API key waiting to be shown once
ACCOUNT_LAYOUT = "allauth/layouts/manage.html"


@never_cache  # the page after creating one carries the raw key: no cache may keep it
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """The list and the create form. A created key's raw value shows on the next GET only."""
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        _, raw = account_services.api_key_create(
            user=request.user, name=form.cleaned_data["name"], ip=client_ip(request)
        )
        hold_secret(request, NEW_API_KEY, raw)
        return redirect("portal:api-keys")
    keys = api_keys_of(user=request.user)
    context = {"form": form, "issued": take_secret(request, NEW_API_KEY), "keys": keys}
    return render(request, "portal/api_keys.html", context)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; a confirmed POST revokes."""
    key = get_object_or_404(ApiKey, pk=pk, user=request.user)
    if not key.is_active:
        messages.info(request, f"API key {key.prefix}… was already revoked.")
        return redirect("portal:api-keys")
    if not confirmed(request):
        confirmation = Confirmation(
            question=f"Revoke the API key {key.prefix}…?",
            facts=(
                ("Name", key.name),
                ("Created", when(key.created_at)),
                ("Last used", when(key.last_used_at)),
            ),
            consequence="Scripts using it are refused from now on. This cannot be undone: create a new key for them.",
            button=f"Revoke {key.prefix}…",
            cancel=reverse("portal:api-keys"),
        )
        return ask(request, {"layout": ACCOUNT_LAYOUT}, confirmation)
    account_services.api_key_revoke(user=request.user, key=key, ip=client_ip(request))
    messages.success(request, f"API key {key.prefix}… revoked.")
    return redirect("portal:api-keys")
