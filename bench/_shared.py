"""What the marketplace benchmarks (index.py, search.py) share: a throwaway PostgreSQL
database for Django, and the real registry entries copied up to a count."""

from __future__ import annotations

import copy
import os
import secrets

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def django_on_postgres(db: str, *, fresh: bool = True, allowed_hosts: str = "127.0.0.1") -> None:
    """Set Django up on the local PostgreSQL database ``db``, migrated. ``fresh`` drops and
    creates it first; the keys are made up for this run, nothing is read from the environment."""
    import psycopg

    if fresh:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {db}")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="mcpnest.settings.base",
        DEBUG="0",
        SECRET_KEY="bench-" + secrets.token_urlsafe(48),
        MCPNEST_ENCRYPTION_KEYS="dGVzdC1vbmx5LWtleS0wMDAwMDAwMDAwMDAwMDAwMDA=",
        MCPNEST_AUDIT_KEYS="bench-" + secrets.token_urlsafe(48),
        MCPNEST_PUBLIC_URL="http://127.0.0.1:8000",  # required without DEBUG; nothing here uses OAuth
        ALLOWED_HOSTS=allowed_hosts,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
        REDIS_URL="",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def copies(real: list[dict], count: int) -> list[dict]:
    """``count`` entries: ``real`` in order, then again and again with each server's name
    suffixed ``-copyN`` (N = 1, 2, …) so that every copy is a distinct server."""
    out, copy_number = [], 0
    while len(out) < count:
        for item in real:
            if len(out) == count:
                break
            clone = copy.deepcopy(item)
            if copy_number:
                clone["server"]["name"] += f"-copy{copy_number}"
            out.append(clone)
        copy_number += 1
    return out
