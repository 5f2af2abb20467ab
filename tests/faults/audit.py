"""Checking the audit trail: one ``ToolCall`` row per answered call (matched by its
``request_id``, the JSON-RPC id the test sent), no duplicates, and intact hash chains.

Rows are read either from this test's own Django database (``DjangoRows``) or, for the
throwaway PostgreSQL cluster, over a plain psycopg connection (``PgRows``).
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tests.faults import procs


@dataclass(frozen=True)
class Row:
    request_id: str
    seq: int
    token_prefix: str
    status: int
    error_code: int | None
    server_slug: str
    tool_name: str


_FIELDS = ("request_id", "seq", "token_prefix", "status", "error_code", "server_slug", "tool_name")


class DjangoRows:
    """ToolCall rows in the running test's own database (needs transactional tests)."""

    def rows(self, prefix: str = "", *, token_prefix: str | None = None) -> list[Row]:
        from apps.audit.models import ToolCall

        query = ToolCall.objects.filter(request_id__startswith=prefix)
        if token_prefix is not None:
            query = query.filter(token_prefix=token_prefix)
        return [Row(*values) for values in query.order_by("chain_id", "seq").values_list(*_FIELDS)]


class PgRows:
    """ToolCall rows in another PostgreSQL database; ``None`` while it is unreachable."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, prefix: str = "", *, token_prefix: str | None = None) -> list[Row] | None:
        import psycopg

        from apps.audit.models import ToolCall

        table = ToolCall._meta.db_table
        sql = f"SELECT {', '.join(_FIELDS)} FROM {table} WHERE request_id LIKE %s"
        args: list = [prefix.replace("%", r"\%").replace("_", r"\_") + "%"]
        if token_prefix is not None:
            sql += " AND token_prefix = %s"
            args.append(token_prefix)
        sql += " ORDER BY chain_id, seq"
        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                return [Row(*values) for values in conn.execute(sql, args).fetchall()]
        except psycopg.OperationalError:
            return None


def wait_for_rows(
    source,
    *,
    prefix: str,
    expected: Iterable[str],
    sent: Iterable[str] | None = None,
    timeout: float = 10.0,
    what: str = "answered calls",
) -> dict[str, Row]:
    """Wait until every id in ``expected`` has an audit row (rows are written in batches, or
    replayed from the spool); then assert exactly one row each, at most one row for any id
    in ``sent`` (calls without a complete answer may or may not have one), and no row for
    an id that was never sent. Returns the row of each expected id."""
    expected = list(expected)
    sent_ids = set(sent) if sent is not None else set(expected)
    sent_ids.update(expected)
    started = time.monotonic()
    rows: list[Row] | None = None
    while True:
        rows = source.rows(prefix)
        counts = Counter(row.request_id for row in rows or [])
        missing = [i for i in expected if counts[i] == 0]
        if rows is not None and not missing:
            break
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.2)
    waited = time.monotonic() - started
    assert rows is not None, f"the database was still unreachable after {timeout}s"
    assert not missing, (
        f"{len(missing)} of {len(expected)} {what} have no audit row after {waited:.1f}s "
        f"({len(rows)} rows with prefix {prefix!r}); first missing: {missing[:8]!r}"
    )
    duplicated = {i: n for i, n in counts.items() if n > 1}
    assert not duplicated, f"duplicated audit rows (request_id: count), first: {dict(list(duplicated.items())[:8])!r}"
    strangers = sorted(set(counts) - sent_ids)
    assert not strangers, f"audit rows for ids this test never sent: {strangers[:8]!r}"
    by_id = {row.request_id: row for row in rows}
    return {i: by_id[i] for i in expected}


def verify_audit(slug: str = "acme") -> str:
    """``manage.py audit_verify SLUG`` in this process (this test's own database): exit 0."""
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", slug, stdout=out, stderr=err)
    except SystemExit as exc:
        raise AssertionError(f"audit_verify {slug} exited {exc.code}:\n{out.getvalue()}{err.getvalue()}") from None
    return out.getvalue()


def verify_audit_at(database_url: str, slug: str = "acme") -> str:
    """``python manage.py audit_verify SLUG`` in a subprocess against ``database_url``: exit 0."""
    result = procs.manage("audit_verify", slug, database_url=database_url)
    assert result.returncode == 0, f"audit_verify {slug} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout
