"""Reads of accounts: a person's API keys."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import ApiKey, User


def api_keys_of(*, user: User) -> QuerySet[ApiKey]:
    """``user``'s own API keys, revoked ones included, newest first."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-id")
