"""Django's side of the relay (``relay``, the Django-free gateway runtime): the hooks it
calls, the settings it runs with, and building the process's gateway.

Every hook runs in one of the relay's worker threads, never on its event loop, and drops
its database connection when that connection is past its age (``db_job``): those threads
outlive requests, so Django's request-end cleanup never reaches them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import weakref
from datetime import datetime
from typing import Any

from django.core.signals import setting_changed
from django.db import close_old_connections, connections
from django.dispatch import receiver
from django.utils import timezone

from apps.audit.services import tool_calls_record
from apps.core import epochs, secrets
from apps.gateway import services
from apps.gateway.snapshots import oauth_connection_key, relay_settings, token_info, workspace_config
from apps.oauth.selectors import SCOPE
from apps.oauth.services import connections_touch
from apps.oauth.tokens import ACCESS_SCHEME
from apps.tokens.models import GatewayToken
from relay.config import Hooks
from relay.gateway import Gateway


def db_job(func):
    """For ORM work in a pool thread: drop the thread's connection when it is past its age."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return wrapper


# --- reads ------------------------------------------------------------------------------


def changes_since(since: datetime | None) -> tuple[datetime, dict[str, int]]:
    now = timezone.now()
    return now, epochs.epochs_changed_since(since or now)


# --- writes -----------------------------------------------------------------------------


def note_token_use(uses: dict[int | str, datetime]) -> None:
    connections_used = {}
    for token_id, used_at in uses.items():
        if isinstance(token_id, int):
            GatewayToken.objects.filter(pk=token_id).update(last_used_at=used_at)
        elif (key := oauth_connection_key(token_id)) is not None:
            connections_used[key] = used_at
    if connections_used:
        connections_touch(connections_used)


def record_calls(rows: list[dict[str, Any]]) -> None:
    tool_calls_record(rows)


def database_name() -> str:
    """A short name for the database the audit rows belong to (the spool's subdirectory)."""
    db = connections["default"].settings_dict
    identity = f"{db['ENGINE']}|{db.get('HOST') or ''}|{db.get('PORT') or ''}|{db['NAME']}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def hooks() -> Hooks:
    return Hooks(
        load_token=db_job(token_info),
        load_workspace=db_job(workspace_config),
        read_changes=db_job(changes_since),
        record_calls=db_job(record_calls),
        note_token_use=db_job(note_token_use),
        observe_pin=db_job(services.pin_observe),
        mark_unhealthy=db_job(services.server_mark_unhealthy),
        spool_name=database_name(),
        token_pattern=re.compile(f"{secrets.pattern('mng').pattern}|{secrets.pattern(ACCESS_SCHEME).pattern}"),
        required_scope=SCOPE,
    )


# --- the gateway ------------------------------------------------------------------------


# The gateways built here, so a settings change reaches them (tests override settings).
_built: weakref.WeakSet[Gateway] = weakref.WeakSet()


def build_gateway() -> Gateway:
    gateway = Gateway(settings=relay_settings(), hooks=hooks())
    _built.add(gateway)
    return gateway


@receiver(setting_changed)
def _apply_setting(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("MCPNEST_"):
        fresh = relay_settings()
        for gateway in list(_built):
            gateway.reconfigure(
                max_response_bytes=fresh.max_response_bytes,
                upstream_timeout=fresh.upstream_timeout,
                upstream_concurrency=fresh.upstream_concurrency,
                workspace_concurrency=fresh.workspace_concurrency,
                queue_seconds=fresh.queue_seconds,
                spool_max_bytes=fresh.spool_max_bytes,
                when_database_down=fresh.when_database_down,
                preauth_rate_limit=fresh.preauth_rate_limit,
                public_url=fresh.public_url,
            )
