"""Invalidation epochs: how every process learns, within a second, that cached data changed.

A service that changes something other processes cache (a token revoked, a user
deactivated, a workspace's servers, rules, pins or settings) moves an epoch **inside its
own transaction**, so the change and the news of it commit together or not at all. The
database is the source of truth: a revocation that committed is seen by every process
that polls, whatever Redis remembers or forgets, with or without Redis at all.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Epoch(models.Model):
    """One cache scope (``tokens``, ``ws:<id>``) and how often it has changed."""

    scope = models.CharField(max_length=64, unique=True)
    version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.scope} v{self.version}"
