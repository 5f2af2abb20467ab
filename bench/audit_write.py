"""Time the gateway's audit writer: CPU per tool-call row, from spool lines to committed rows.

    .venv/bin/python bench/audit_write.py [--backend both|postgresql|sqlite] [--rows 6000] [--rounds 5]

What the gateway's recorder thread does per batch, on rows shaped as ``relay.engine.Engine._record``
writes them: parse the spool lines (``relay.spool._lines``), then ``tool_calls_record`` (clean every
value, lock the chain head, skip replayed ``record_id``s, MAC each row, insert, move the head).
That thread shares the GIL with the gateway's event loop, so its CPU is what the gateway loses:
the numbers are this process's CPU time (``time.process_time``) per row, at batch sizes 30, 300
and 1,000 (one workspace), the best and the median of ``--rounds`` rounds of ``--rows`` rows each.
On SQLite the database engine runs in this process, so its CPU is counted too. ``parse`` is the
spool parse alone; ``server`` (PostgreSQL on this machine) is the CPU of the connection's server
process (``/proc/<pg_backend_pid()>/stat``): the cost of a row that the gateway's process does
not see, but that a machine shared with the database pays all the same.

The databases are throwaway ones, never the dev or test database: PostgreSQL database
``mcpnest_bench_audit`` on 127.0.0.1:5432 (user postgres; created, then dropped), and a SQLite
file in a temporary directory. Each backend runs in its own process (Django is set up once).
The chains are verified at the end.

Measured on a shared 2-vCPU VM while other benchmarks ran (Django 5.2, psycopg 3.3, Python 3.11,
PostgreSQL 15, SQLite 3.40): CPU µs per row, best of 5 rounds of 6,000 rows, the code before
and after the recorder's fast path (``chain.append_tool_calls``), run back to back. Runs
minutes apart differ by up to a third on this machine; the ratio holds (about 1/3).

    backend     batch   before: models + bulk_create   after: plain rows + executemany
    postgresql     30                            542                               187
    postgresql    300                            305                               120
    postgresql   1000                            299                               115
    sqlite         30                            573                               180
    sqlite        300                            399                               161
    sqlite       1000                            380                               159

Then (2026-12-01, same VM, 5 rounds, medians) one INSERT per batch with an array per column
(``unnest``, sent in binary) instead of ``executemany``, and four indexes fewer on the table
(chain, workspace and member each led a composite index already; ``record_id``'s unused
``varchar_pattern_ops`` twin), run back to back:

    backend     batch   executemany: gateway  server      unnest: gateway  server
    postgresql     30                    127     222                  119     112
    postgresql    300                     82     225                   73      68
    postgresql   1000                     83     157                   73      63

The server's CPU per row falls by two thirds; the gateway's stays where it was.

What was left, per row at a batch of 1,000 on PostgreSQL (before the unnest INSERT): the
spool parse ~8, cleaning ~15, the hashed values' dict ~10, canonical JSON ~17, HMAC ~4, psycopg's
executemany ~20, the replay check ~3; per batch ~0.7 ms for its statements (lock the head, skip
written ids, insert, move the head, commit), ~23 µs a row at 30. On SQLite the engine's own
work (the row and its 14 indexes) is in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "mcpnest_bench_audit"
BATCHES = (30, 300, 1000)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--rows", type=int, default=6000, help="rows per round and batch size (default 6,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per batch size (best and median reported)")
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    """Django on ``database_url``, migrated; the keys are made up for this run."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="mcpnest.settings.test",
        DEBUG="0",  # DEBUG would record every query: not what a gateway pays
        SECRET_KEY="bench-" + secrets.token_urlsafe(48),
        MCPNEST_AUDIT_KEYS="bench-" + secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        REDIS_URL="",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def spool_lines(workspace_id: int, member_id: int, count: int) -> list[bytes]:
    """``count`` spool lines as the gateway writes them (``Engine._record``, ``Recorder.record``)."""
    lines = []
    for i in range(count):
        row = {
            "record_id": os.urandom(16).hex(),
            "workspace_id": workspace_id,
            "member_id": member_id,
            "member_repr": "carol@example.com",
            "token_prefix": "mng_0123abcd",
            "oauth_client": "" if i % 4 else "claude-desktop-3f9a",
            "server_slug": ("git", "docs", "jira")[i % 3],
            "tool_name": ("create_pr", "search", "comment", "")[i % 4],
            "method": "tools/call" if i % 4 else "tools/list",
            "status": 200 if i % 10 else 403,
            "error_code": None if i % 10 else -32001,
            "latency_ms": 40 + i % 200,
            "client_ip": f"10.0.{i % 256}.7",
            "client_name": "claude-code",
            "client_version": "1.0.43",
            "session_id": f"3f1c0d6a9b2e4f7a8c5d{i // 50:012x}",
            "request_id": str(i),
            "shadow_blocked": i % 50 == 0,
            "created_at": datetime.now(UTC).isoformat(),
        }
        lines.append(json.dumps(row, separators=(",", ":"), default=str).encode())
    return lines


def run_backend(backend: str, rows: int, rounds: int) -> None:
    from django.db import connection

    from apps.accounts.models import User
    from apps.audit import chain
    from apps.audit.services import tool_calls_record
    from apps.workspaces.models import Workspace
    from relay.spool import _lines

    workspace = Workspace.objects.create(slug="bench-audit", name="Bench audit")
    member = User.objects.create(email="carol@example.com")
    print(f"\n{connection.vendor}: CPU µs per row, {rounds} rounds of {rows:,} rows per batch size")
    server = _server_cpu(connection)
    print(f"{'batch':>6}{'best':>10}{'median':>10}{'wall/row':>10}{'parse':>8}" + (f"{'server':>8}" if server else ""))
    tool_calls_record(_lines(b"\n".join(spool_lines(workspace.pk, member.pk, 100))))  # warm-up
    for size in BATCHES:
        cpu, wall, parse, served = [], [], [], []
        for _ in range(rounds):
            batches = [
                b"\n".join(spool_lines(workspace.pk, member.pk, min(size, rows - start)))
                for start in range(0, rows, size)
            ]
            server_started = server() if server else 0.0
            cpu_started, wall_started, parsing = time.process_time(), time.perf_counter(), 0.0
            for data in batches:
                parse_started = time.process_time()
                calls = _lines(data)
                parsing += time.process_time() - parse_started
                written = tool_calls_record(calls)
                assert written == len(calls), (written, len(calls))
            cpu.append((time.process_time() - cpu_started) / rows * 1e6)
            wall.append((time.perf_counter() - wall_started) / rows * 1e6)
            parse.append(parsing / rows * 1e6)
            served.append(((server() if server else 0.0) - server_started) / rows * 1e6)
        print(
            f"{size:>6}{min(cpu):>10.1f}{statistics.median(cpu):>10.1f}"
            f"{statistics.median(wall):>10.1f}{statistics.median(parse):>8.1f}"
            + (f"{statistics.median(served):>8.1f}" if server else "")
        )
    for chain_obj, model in chain.iter_chains(workspace.pk):
        result = chain.verify_chain(chain_obj, model)
        if isinstance(result, chain.Break):
            sys.exit(f"chain broken: {result}")
        print(f"verified: {result.rows:,} {chain_obj.stream} rows")


def _server_cpu(connection):
    """For PostgreSQL on this machine: a function giving the CPU seconds of this connection's
    server process (``/proc/<pg_backend_pid()>/stat``), the cost of each row that the
    gateway's process does not see; None elsewhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():  # the server runs elsewhere
        return None

    def seconds() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return seconds


def child(backend: str, rows: int, rounds: int) -> None:
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
        try:
            setup_django(f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}")
            run_backend(backend, rows, rounds)
        finally:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    else:
        with tempfile.TemporaryDirectory(prefix="mcpnest-bench-audit-") as directory:
            setup_django(f"sqlite:///{directory}/audit.sqlite3")
            run_backend(backend, rows, rounds)


def main() -> None:
    args = parse_args()
    if os.environ.get("MCPNEST_BENCH_CHILD"):
        child(args.backend, args.rows, args.rounds)
        return
    backends = ("postgresql", "sqlite") if args.backend == "both" else (args.backend,)
    for backend in backends:
        command = [
            sys.executable,
            __file__,
            "--backend",
            backend,
            "--rows",
            str(args.rows),
            "--rounds",
            str(args.rounds),
        ]
        subprocess.run(command, check=True, env={**os.environ, "MCPNEST_BENCH_CHILD": "1"})  # noqa: S603 - ours


if __name__ == "__main__":
    main()
