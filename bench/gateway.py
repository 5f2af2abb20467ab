"""Gateway benchmark: real upstream MCP servers, the gateway under uvicorn, a raw httpx2 client.

    .venv/bin/python bench/gateway.py [--config sqlite|pg-redis|both] [--scale] [--calls N] [--rounds R]
                                      [--server uvicorn|daphne] [--access-log]
                                      [--parts throughput,restarts,scale] [--upstream-sse]

Two configurations (``--config``; ``both`` runs one after the other, each in a child
process of this script, and prints a combined summary):

* ``sqlite``: the embedded defaults, SQLite ``var/bench-gateway.sqlite3`` and rate limits
  and ended sessions in the gateway process's memory;
* ``pg-redis``: PostgreSQL (database ``mcpnest_bench_gw`` on 127.0.0.1:5432, dropped and
  created by this script, never the test database) and Redis db 1 (flushed by this script).
  ``--postgres`` is the old spelling.

What runs (each its own process, all on 127.0.0.1):

* 5 upstreams: the fixture server of ``tests/gateway/upstream.py`` (the official ``mcp``
  SDK's MCPServer under uvicorn), answering with JSON bodies (``--upstream-sse`` for SSE
  streams). JSON is the default because it is the fairer comparison: with SSE the SDK
  server is slower on the direct client's 2025 session than on the gateway's stateless
  2026-07-28 requests, which flatters the gateway;
* one gateway process: ``mcpnest.asgi:application`` under uvicorn with the README's options
  (``tests.gateway.server.SERVER_OPTIONS``, no access log; ``--access-log`` adds uvicorn's),
  or under daphne (``--server daphne``). Its output goes to ``var/bench-gateway-<config>.log``;
* with ``--scale``, one more upstream process: a minimal MCP server (2026-07-28, stateless,
  JSON) that serves ``/t<N>/<anything>`` with N tools, so that thousands of
  ``UpstreamServer`` rows, each with its own URL path, cost one process;
* this script.

The parts (``--parts``, default ``throughput,restarts``; ``--scale`` adds ``scale``):

* ``throughput``: the workspace is set up with the operator commands (5 servers ``s1``..``s5``,
  enforcement ``enforce``, an allowlist naming each of the 20 tools, a rate limit that never
  trips, a member token). Then ``tools/call`` (``s1_echo``) and ``tools/list`` straight at
  upstream s1 and through the gateway, at concurrency 1 and 32, in alternating rounds
  (calls/s: the median round; percentiles: all rounds). Every client holds a 2025-era
  session (initialize once, reuse ``Mcp-Session-Id``) and one keep-alive connection.
  Then one ToolCall row per ``tools/call`` sent through the gateway, and ``audit_verify``.
* ``restarts``: SIGTERM right after a burst of calls (the rows still queued are written at
  exit: all must be there); SIGTERM with calls in flight (every answered call has its row;
  calls cancelled by the shutdown are on record with status 499); SIGKILL with calls in
  flight, then a new process on the same spool, which must replay every answered call's row
  (crash-loss 0). Last, the microseconds a call spends appending its row to the spool.
* ``scale``: rows made in bulk with the ORM (what the operator commands would make, minus
  the per-row round trips): a workspace ``big`` with 20 upstreams of 50 tools each, 500
  workspaces ``ws000``..``ws499`` with 5 upstreams of 10 tools each, and 100,000 gateway
  tokens (with real digests, ``apps.core.secrets.generate``), then a fresh gateway process:
  - memory per workspace: the gateway process's VmRSS (``/proc/<pid>/status``) after a
    warm-up on the throughput workspace, then after a ``tools/list`` in each of the 500
    workspaces (its config, token, catalog and upstream sessions all loaded), divided by 500;
  - cached ``tools/list`` p50: the 1,000-tool workspace, and a random one of 50 of the 500
    per call (catalogs live 30 s, ``relay.catalog.CATALOG_TTL``: the 50 are listed once first);
  - token checks: ``initialize`` with tokens this process has never seen (a database lookup
    by digest each), first with ~2,000 tokens in the table and again after 98,000 more are
    added: O(1) means the second p50 is no worse than the first (within noise: 1.5x + 0.2 ms).
    A cached token's ``initialize`` p50 is printed beside them.

Targets (2-core machine, one gateway process), each printed with PASS or MISS; the script
exits 0 either way:

* added p50 latency of ``tools/call`` at concurrency 1 <= 1 ms (both configurations);
* gateway throughput of ``tools/call`` at concurrency 32 >= 70% of direct (the issue names
  PostgreSQL + Redis, where it was ~53%; printed against the same bar for SQLite);
* cached ``tools/list`` p50 < 2 ms: 5 upstreams; with ``--scale`` also 20 x 50 tools and
  across the 500 workspaces; token checks O(1) with 100,000 tokens; memory per workspace is
  reported, with no target.

Noise: the bench client, the gateway and the upstreams share the two cores, and the VM is
shared: the direct baseline moves by about 10% from run to run. Run each configuration a
few times and read the ratios. Numbers and notes: the end of this docstring.

NOTES

2026-12-01, later the same day (a fresh VM, as slow: the direct c=1 baseline at 387-428
calls/s; rounds of the same code moved between 673 and 1,202 calls/s direct at c=32, so a
run's c=32 ratio moves by about four points either way), PostgreSQL + Redis, ``--parts
throughput``, 5 rounds of 1000 (the last run 7). At the start: 62% of direct at c=32, added
p50 1.25 ms. Four runs of the final code: c=32 at 74%, 67%, 70% and 68% of direct (median
69%: the target is met in two runs of four); added p50 at c=1 1.00, 0.92, 1.01 and 0.85 ms
(median 0.96); gateway CPU per tools/call 0.73-0.79 ms at c=32 and 0.98-1.12 at c=1, about a
third of the direct path's CPU (client and upstream, 2.1-2.4 ms); audit 10,200 (14,200) of
10,200 (14,200) rows, verified. SQLite the same day, two runs: 70% and 70% (one just under),
added p50 0.96 and 0.92 ms. What changed, largest first:

* PostgreSQL's own CPU per audit row. Measured per process (``/proc``, every process on the
  machine), the database spent 0.225 ms per gateway call at c=32, more than a quarter of
  the gateway's own CPU, and on the same two cores. The recorder now inserts a batch as one
  statement (``unnest`` over one binary array per column) and the audit tables lost seven
  indexes that composite ones made redundant: 0.07 ms per call (``bench/audit_write.py``
  prints the server's CPU per row: 157-225 µs before, 63-112 after).
* No task, queue or ``asyncio.wait`` per call: a recorded call runs in the request's own
  task while its answer is sent (``apps.gateway.views.CallAnswer``), and the disconnect
  listener starts only for requests still running after 50 ms. Event loop iterations per
  tools/call at c=1 (``strace -c``, epoll_pwait): 6.2 before, 3.9 after.
* No access log in the README's command (uvicorn's logging was 5% of the gateway's
  samples); ``--access-log`` puts it back here.
* orjson for the JSON the gateway sends and parses (it was 11% of the gateway's samples),
  with the standard library for what orjson refuses or would read otherwise.

What is left (py-spy, c=32, busy samples): uvloop's own C work and the sockets ~16%,
uvicorn's protocol ~10%, the upstream exchange (``relay.upstream``, ``relay.http1``, asyncio
streams and timeouts) ~21%, the recorder thread ~10%, the view and engine ~15%.

2026-12-01, a slow VM day (the direct c=1 baseline at 310-430 calls/s against 1164 on the
quiet day below; every absolute figure is ~3.5x a quiet day's), PostgreSQL + Redis, ``--parts
throughput``, 3 rounds of 1000. Before today's changes (daphne, Django's handler): c=32 at 42%
of direct, gateway CPU 2.87 ms per tools/call at c=1 and 1.62 at c=32. The same day with
the gateway served as plain ASGI (``apps.gateway.wire``: no HttpRequest/HttpResponse, a fifth
of the CPU per call), upstream calls through ``relay.http1`` without httpx2's models (half
the upstream client's CPU), the recorder writing without model instances (a third of its CPU
per row, ``bench/audit_write.py``) and uvicorn with uvloop and httptools as the server (the
README's command): c=32 at 64% of direct, gateway CPU 2.22 ms at c=1 and 1.32 at c=32;
tools/list through the gateway at 1.28-1.50x the direct throughput (its catalog is cached,
the SDK server builds its list per request); audit 6200 of 6200 rows, verified. The gateway's
CPU per call against the direct path's (client + upstream, measured the same way by a lab
script): 0.80-0.85 before, 0.39-0.46 after, where 70% needs <= 0.43. Added p50 at c=1 was
3.19 ms that day, the direct p50 itself 3.14 ms (0.85 ms on the quiet day): the 1 ms target
is a quiet-machine figure. What is left (py-spy, c=32, busy samples): uvloop's own C work and
the sockets ~29%, the upstream exchange ~18%, the recorder thread ~16% (much of it waiting on
PostgreSQL inside psycopg), the view and engine ~28%, uvicorn's protocol ~12%.

2026-11-30, later (a slower day on the same VM: the direct c=1 baseline ran at 600-820
calls/s against 1164 on the quiet day below), PostgreSQL + Redis, ``--parts throughput``, 3
rounds of 1000, one run each, back to back: the commit before the marketplace work (daphne)
c=32 at 43% of direct, gateway CPU 1.49 ms per call at c=1 and 1.12 at c=32; today's code
under daphne 43%, 2.01 and 1.37 ms; under ``--server uvicorn`` (uvloop and httptools
installed) 54%, 1.99 and 1.17 ms. The day's noise (a third between runs) hides any
difference between the two commits; uvicorn's gain at c=32 is the largest single step seen
since the rate limiter's, and still short of 70%.

A quiet machine, 2026-11-30 (a fresh VM, nothing else running; PostgreSQL + Redis,
``--parts throughput``, 3 rounds of 1000): direct tools/call 1164 calls/s at c=1 (p50 0.85
ms) and 2065 at c=32; through the gateway 516 and 901. Added p50 at c=1 0.93 ms (PASS);
c=32 throughput 44% of direct (MISS); cached tools/list p50 0.75 ms (PASS, 0.98 of direct
throughput at c=1); 6200 calls, 6200 rows, audit_verify OK. The gateway's CPU per
tools/call: 0.89 ms at c=1, 0.71 ms at c=32. What that means for the c=32 target on 2
cores: the direct baseline spends ~0.97 ms of CPU per call (client + upstream), so with
0.71 ms more in the gateway the best a CPU-bound run can show is 0.97 / 1.68 = 58%; 70%
needs the gateway at <= 0.42 ms per call, i.e. 40% less than today. The largest pieces left
(py-spy, below): Twisted/daphne, the audit recorder's replay thread (Django's bulk_create
compiling the INSERT per batch, in the same process and GIL) and Django's handler.

Before/after the rate limiter stopped making a Redis round trip per request (``relay.shared``:
hits leased from Redis in batches, ended sessions read from a Redis stream in the
background), PostgreSQL + Redis, ``--calls 600``, on a day the VM was shared with several
test suites (load average 5-7 on 2 cores; the direct baseline ran at 160-500 calls/s against
858 on a quiet day, and moved 2x between runs). Wall-clock ratios were noise that day; the
gateway's CPU time per call (``/proc/<pid>/stat``, inflated by the contention too, but
comparable between runs) is the figure to compare:

                                  before (2 runs)       after (2 runs)
    CPU ms per tools/call, c=1    4.77, 4.40            3.37, 3.87
    CPU ms per tools/call, c=32   3.40, 2.95            2.64, 2.45
    CPU ms per tools/list, c=1    3.14, 3.01            1.57, 1.84
    CPU ms per tools/list, c=32   2.49, 2.36            1.67, 1.34
    tools/call c=32 gateway/direct 54%, 46%             42%, 61%
      (and 51%, 44%, 58% in three more runs before)
    tools/list c=1 p50 gateway/direct 1.68, 1.30        0.92, 1.03

Scale, PostgreSQL + Redis, after, the same loaded day (``--parts scale``): memory per
workspace 131 KiB (VmRSS 140.9 -> 204.6 MiB over 500 workspaces x 5 upstreams x 10 tools);
cached tools/list p50 3.54 ms across 50 of the 500 workspaces (the 5-upstream list of the
throughput part was 2.6-3.5 ms that day) and 10.84 ms for the 1,000-tool workspace, MISS
both: encoding a 225 KB answer with ``json.dumps`` alone took 6 ms that day (~1.5 ms on a
quiet one), so < 2 ms needs the encoded list cached (a prototype that encodes each tools/list once per
catalog and audience measured 5.24 ms for the 1,000-tool list on the same day); token
checks with unseen tokens 10.17 ms at 2,000 tokens and 12.56 ms at 100,001, PASS (a cached
token: 3.82 ms); 98,000 tokens made in 14.5 s.

SQLite (in-process counters: no change there), the same day: CPU ms per tools/call 3.55 at
c=1, 2.78 at c=32; c=32 at 52% of direct; memory per workspace 134 KiB; cached tools/list
p50 7.49 ms (50 of 500 workspaces) and 20.40 ms (1,000 tools); token checks PASS.

py-spy of the gateway after the change (c=1 and c=32 together): the rate limiter and redis-py
are 2.5% of its samples (background stream reads and leases included), down from the
largest single cost. What is left: Twisted and daphne ~24% (the access log alone ~7%:
``untilConcludes`` and ``AccessLogGenerator``), asyncio ~17%, Django's handler ~15%,
psycopg ~6% (the audit rows and token use), JSON ~6%, httpx2 + ``relay.http1`` ~7%, the
view, engine and snapshots ~7%.

Two more pairs the same day, PostgreSQL + Redis, after: with daphne's access log (CPU ms per
tools/call 3.62 and 4.32 at c=1, 3.03 and 2.91 at c=32; c=32 at 62% and 54% of direct) and
without it (``--no-access-log``: 3.88 and 3.97, 3.54 and 3.13; 69% and 51%): the access log's
~7% of samples did not show through that day's noise.

Where a gateway call's CPU went on a quiet day before that (py-spy, c=32, ~0.8 ms per call
in all): daphne and Twisted ~30%, the upstream request ~20%, Django's handler, request and
response ~12%, the audit recorder's thread ~10%, the view and engine ~15%, and with
PostgreSQL + Redis the Redis round trip of the rate limit, ~0.1 ms of CPU plus the wait.
Quiet-day numbers then (3 rounds of 1000): SQLite added 1.16 ms at c=1 and reached 56% of
direct at c=32; PostgreSQL + Redis added 1.34 ms and reached 53%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway.server import free_port, server_command, wait_for_port  # noqa: E402 (the path first)

SLUG = "bench"
OWNER = "bench@example.com"
SERVERS = 5
TOOLS = ("echo", "add", "slow", "fail")  # the fixture server's tools
CALLED = "s1_echo"
SQLITE_PATH = ROOT / "var" / "bench-gateway.sqlite3"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DB = "mcpnest_bench_gw"
REDIS_BENCH_URL = "redis://127.0.0.1:6379/1"
SPOOL_DIR = ROOT / "var" / "bench-spool"
VERSION = "2025-11-25"
BURST = 1000
UNLIMITED = 1_000_000_000  # requests per minute: a rate limit that never trips

# The targets (see the docstring).
ADDED_P50_MS = 1.0
C32_SHARE = 0.70
LIST_P50_MS = 2.0

# The scale scenarios.
BIG_SERVERS, BIG_TOOLS = 20, 50
MANY_WORKSPACES, MANY_SERVERS, MANY_TOOLS = 500, 5, 10
TOKENS_TOTAL = 100_000
TOKENS_SMALL = 2_000  # the table's size for the first round of token checks
COLD_PROBES = 300  # unseen tokens per round of token checks
SAMPLED = 50  # workspaces whose cached tools/list is timed (all 500 cannot stay cached at c=1)


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    postgres: bool


CONFIGS = {
    "sqlite": Config("sqlite", "SQLite + in-process counters (embedded defaults)", postgres=False),
    "pg-redis": Config("pg-redis", "PostgreSQL + Redis", postgres=True),
}


# --- processes ------------------------------------------------------------------------------


def serve_upstream(port: int, sse: bool) -> None:
    """Child mode: one fixture MCP server in this process, until killed."""
    import logging

    import uvicorn

    from tests.gateway.upstream import build_server

    logging.getLogger("mcp").setLevel(logging.WARNING)  # no line per session opened or closed

    app = build_server("bench").streamable_http_app(json_response=not sse)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def tool_definitions(count: int) -> list[dict]:
    """The tools the scale upstream serves on ``/t<count>/...`` (and the bench pins)."""
    return [
        {
            "name": f"tool_{index:02d}",
            "description": f"Bench tool number {index}: returns its text argument unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string", "description": "What to send back."}},
                "required": ["text"],
            },
        }
        for index in range(count)
    ]


def serve_many_tools(port: int) -> None:
    """Child mode: a minimal stateless MCP server (2026-07-28, JSON answers) for the scale
    scenarios. ``/t<N>/<anything>`` lists N tools, so every UpstreamServer row gets a URL of
    its own from one process."""
    import uvicorn

    lists: dict[int, bytes] = {}
    discover = {
        "supportedVersions": ["2026-07-28"],
        "capabilities": {"tools": {}},
        "resultType": "complete",
        "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "bench-many", "version": "1"}},
    }

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body or b"{}")
        if "id" not in request:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        method = request.get("method")
        if method == "server/discover":
            result = discover
        elif method == "tools/list":
            count = int(scope["path"].split("/")[1][1:] or 0)
            if count not in lists:
                lists[count] = json.dumps({"tools": tool_definitions(count), "resultType": "complete"}).encode()
            answer = b'{"jsonrpc":"2.0","id":%s,"result":%s}' % (json.dumps(request["id"]).encode(), lists[count])
            await _send_json(send, answer)
            return
        elif method == "tools/call":
            text = str((request.get("params") or {}).get("arguments", {}).get("text", ""))
            result = {"content": [{"type": "text", "text": text}], "resultType": "complete"}
        else:
            error = {"code": -32601, "message": f"Method not found: {method}"}
            await _send_json(send, json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode())
            return
        await _send_json(send, json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode())

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)


async def _send_json(send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def start_child(mode: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [sys.executable, __file__, mode, str(port), *extra]
    return subprocess.Popen(args, cwd=ROOT), port  # noqa: S603 (our own interpreter and script)


def start_upstreams(sse: bool) -> list[tuple[subprocess.Popen, str]]:
    started = [start_child("--serve-upstream", *(["--upstream-sse"] if sse else [])) for _ in range(SERVERS)]
    try:
        for process, port in started:
            wait_for_port(port, process)
    except BaseException:
        for process, _ in started:
            process.kill()
        raise
    return [(process, f"http://127.0.0.1:{port}/mcp") for process, port in started]


class Gateway:
    """One server process (uvicorn as the README runs it, or daphne) serving
    mcpnest.asgi:application; its output goes to a log file."""

    def __init__(self, env: dict[str, str], name: str, access_log: bool = False, server: str = "uvicorn") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/gw/"
        self.url = self.base + SLUG
        self.log_path = ROOT / "var" / f"bench-gateway-{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no var/ yet
        self._env = env
        self._access_log = access_log
        self._server = server
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("a" if self.process else "w")
        if self._server == "uvicorn":  # as the README runs it
            args = server_command(self.port, *(["--access-log"] if self._access_log else []))
        else:
            endpoint = f"tcp:port={self.port}:interface=127.0.0.1:backlog=1024"  # as the README runs it
            verbosity = [] if self._access_log else ["-v", "0"]  # daphne writes no access log at verbosity 0
            args = [str(Path(sys.executable).parent / "daphne"), *verbosity, "-e", endpoint, "mcpnest.asgi:application"]
        self.process = subprocess.Popen(args, cwd=ROOT, env=self._env, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603
        wait_for_port(self.port, self.process, log=self.log_path)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the server to exit (after a SIGTERM, as a process manager sends on a restart)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.wait()

    def rss_mib(self) -> float:
        """The server process's resident memory (VmRSS), in MiB."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system), from ``/proc/<pid>/stat``."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --- database and workspace -------------------------------------------------------------------


def bench_env(config: Config) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="mcpnest.settings.base",
        DEBUG="0",
        SECRET_KEY="bench-" + secrets.token_urlsafe(48),
        MCPNEST_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        MCPNEST_AUDIT_KEYS="bench-" + secrets.token_urlsafe(48),
        MCPNEST_PUBLIC_URL="http://127.0.0.1:8000",  # required without DEBUG; nothing here uses OAuth
        MCPNEST_SPOOL_DIR=str(SPOOL_DIR),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # Every bench client is 127.0.0.1: the scale part opens 500 workspaces a process has
        # not loaded yet within a minute, which the per-IP pre-authentication limit would refuse.
        MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT=str(UNLIMITED),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{PG_DB}" if config.postgres else f"sqlite:///{SQLITE_PATH}",
        REDIS_URL=REDIS_BENCH_URL if config.postgres else "",
    )
    return env


def fresh_database(config: Config) -> None:
    if config.postgres:
        import psycopg
        import redis

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
        client = redis.Redis.from_url(REDIS_BENCH_URL)
        client.flushdb()  # db 1 is the bench's own: counters, ended sessions, queued tasks
        client.close()
    else:
        SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(SPOOL_DIR, ignore_errors=True)  # a spool left by an earlier run belongs to its database


def setup_workspace(upstream_urls: list[str]) -> str:
    """The workspace, through the same operator commands an administrator uses; returns a member token."""
    from django.core.management import call_command

    quiet = io.StringIO()
    call_command("migrate", verbosity=0, stdout=quiet)
    call_command("createworkspace", SLUG, owner=OWNER, stdout=quiet)
    for index, url in enumerate(upstream_urls, start=1):
        call_command("addserver", SLUG, f"s{index}", url, prefix=f"s{index}_", stdout=quiet)
    pin_servers(SLUG)
    rules = [f"s{index}:{tool}" for index in range(1, SERVERS + 1) for tool in TOOLS]
    call_command("allowtools", SLUG, OWNER, *rules, stdout=quiet, stderr=quiet)
    call_command("enforcement", SLUG, "enforce", stdout=quiet)
    call_command("ratelimit", SLUG, UNLIMITED, stdout=quiet)
    token = io.StringIO()
    call_command("issuetoken", SLUG, member=OWNER, name="bench", stdout=token, stderr=quiet)
    return token.getvalue().strip()


def pin_servers(slug: str) -> None:
    """Make sure every server of the workspace is approved with its tools pinned, as
    ``addserver`` promises. When the approval did not happen (its task is queued for a
    Celery worker this bench does not run, or it was dropped), the bench lists the tools
    itself and pins them, and says so."""
    from apps.gateway.models import ToolPin, UpstreamServer
    from apps.gateway.snapshots import one_off_pool, upstream_config
    from relay.catalog import fingerprint

    servers = [
        server
        for server in UpstreamServer.objects.filter(workspace__slug=slug).order_by("position")
        if server.status != UpstreamServer.Status.APPROVED or not server.pins.exists()
    ]
    if not servers:
        return

    async def listed() -> list[list[dict]]:
        async with one_off_pool() as pool:
            return [
                await pool.get(upstream_config(server)).list_all("tools/list", "tools", timeout=10)
                for server in servers
            ]

    details = {server.slug: server.check_error or server.health_detail or server.check_state for server in servers}
    pins = [
        ToolPin(server=server, tool_name=tool["name"], fingerprint=fingerprint(tool), definition=tool)
        for server, tools in zip(servers, asyncio.run(listed()), strict=True)
        for tool in tools
    ]
    ToolPin.objects.bulk_create(pins, ignore_conflicts=True)
    UpstreamServer.objects.filter(pk__in=[s.pk for s in servers]).update(status=UpstreamServer.Status.APPROVED)
    print(f"note: addserver left {len(servers)} server(s) unapproved or unpinned {details}; pinned by the bench")


def tool_call_rows(status: int | None = None) -> int:
    from django.db import close_old_connections

    from apps.audit.models import ToolCall

    close_old_connections()
    rows = ToolCall.objects.filter(workspace__slug=SLUG, method="tools/call")
    return (rows if status is None else rows.filter(status=status)).count()


def wait_for_rows(expected: int, timeout: float = 60.0, status: int | None = None) -> int:
    """The recorder writes in the background: poll until every row is in (or time runs out)."""
    deadline = time.monotonic() + timeout
    rows = tool_call_rows(status)
    while rows < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = tool_call_rows(status)
    return rows


def audit_verify() -> tuple[bool, str]:
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", SLUG, stdout=out, stderr=err)
    except SystemExit:
        return False, err.getvalue().strip()
    return True, "; ".join(line for line in out.getvalue().splitlines() if "calls" in line.lower()) or out.getvalue()


# --- the client ---------------------------------------------------------------------------------


class Session:
    """One MCP client of the 2025 revisions: one keep-alive connection, one session."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import httpx2

        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url
        self.http = httpx2.AsyncClient(
            headers=headers, timeout=60, limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        )
        self._ids = 0

    async def open(self) -> Session:
        init = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        response = await self.http.post(self.url, content=self._message("initialize", init))
        _reply(response)
        self.http.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        self.http.headers["MCP-Protocol-Version"] = VERSION
        note = await self.http.post(
            self.url, content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        if note.status_code != 202:
            raise RuntimeError(f"notifications/initialized answered HTTP {note.status_code}")
        return self

    def _message(self, method: str, params: dict) -> bytes:
        self._ids += 1
        return json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}).encode()

    async def request(self, method: str, params: dict) -> dict:
        return _reply(await self.http.post(self.url, content=self._message(method, params)))

    async def request_raw(self, method: str, params: dict) -> bytes:
        """The answer's body, unparsed (a 1,000-tool list costs the client more to parse than
        the gateway to send); a non-200 answer is a benchmark error."""
        response = await self.http.post(self.url, content=self._message(method, params))
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return response.content

    async def close(self) -> None:
        await self.http.aclose()


def _reply(response) -> dict:
    """The JSON-RPC result from a JSON or an SSE answer; anything else is a benchmark error."""
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        datas = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        message = json.loads([d for d in datas if d][-1])
    else:
        message = response.json()
    if "result" not in message or message["result"].get("isError"):
        raise RuntimeError(f"not a successful result: {json.dumps(message)[:300]}")
    return message["result"]


@dataclass
class Stats:
    calls: int
    per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float | None = None  # the gateway process's CPU time per call (less noisy than the wall clock)


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def p50_ms(latencies: list[float]) -> float:
    return _percentile(sorted(latencies), 0.5) * 1000


async def drive(sessions: list[Session], method: str, params: dict, calls: int) -> tuple[float, list[float]]:
    """``calls`` requests spread over the sessions, each session one request at a time;
    returns the calls per second and every call's latency."""
    latencies: list[float] = []
    remaining = calls

    async def worker(session: Session) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await session.request(method, params)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(session) for session in sessions))
    return calls / (time.perf_counter() - started), latencies


CALL = ("tools/call", {"name": "", "arguments": {"text": "hello from the bench"}})
LIST = ("tools/list", {})


async def measure(gateway: Gateway, direct_url: str, token: str, calls: int, rounds: int) -> tuple[dict, int]:
    """Every scenario, direct and through the gateway in alternating rounds (so a slow
    moment of a shared machine does not land on one side only): the median round's
    calls/s, the percentiles of all rounds' latencies, and the gateway's CPU time per call
    (what a busy, shared machine disturbs least). Returns the results and the number of
    tools/call requests sent through the gateway."""
    gateway_url = gateway.url
    results: dict[tuple[str, int, str], Stats] = {}
    gateway_calls = 0
    warmup = max(50, calls // 10)
    for concurrency in (1, 32):
        sessions = {
            "direct": [await Session(direct_url).open() for _ in range(concurrency)],
            "gateway": [await Session(gateway_url, token).open() for _ in range(concurrency)],
        }
        for method, params in (CALL, LIST):
            rates: dict[str, list[float]] = {"direct": [], "gateway": []}
            latencies: dict[str, list[float]] = {"direct": [], "gateway": []}
            cpu = 0.0
            for round_ in range(rounds + 1):  # round 0 warms up
                for target in ("direct", "gateway"):
                    if method == "tools/call":
                        params = {**params, "name": "echo" if target == "direct" else CALLED}
                        gateway_calls += (warmup if round_ == 0 else calls) if target == "gateway" else 0
                    cpu_before = gateway.cpu_seconds()
                    rate, lat = await drive(sessions[target], method, params, warmup if round_ == 0 else calls)
                    if round_ and target == "gateway":
                        cpu += gateway.cpu_seconds() - cpu_before
                    if round_:
                        rates[target].append(rate)
                        latencies[target].extend(lat)
            for target in ("direct", "gateway"):
                lat = sorted(latencies[target])
                results[(method, concurrency, target)] = Stats(
                    len(lat),
                    statistics.median(rates[target]),
                    _percentile(lat, 0.5) * 1000,
                    _percentile(lat, 0.99) * 1000,
                    cpu / len(lat) * 1000 if target == "gateway" else None,
                )
        for session in (*sessions["direct"], *sessions["gateway"]):
            await session.close()
    return results, gateway_calls


# --- restarts and crashes -------------------------------------------------------------------------


async def restart_under_load(
    gateway: Gateway, token: str, calls: int, *, in_flight: bool, sig: int = signal.SIGTERM
) -> tuple[int, int]:
    """32 clients call until ``calls`` answers are in; then ``sig`` goes out at once, either
    after the last answer (``in_flight=False``) or while the other clients' calls are still
    in flight. Returns (requests sent, requests answered)."""
    import httpx2

    sessions = [await Session(gateway.url, token).open() for _ in range(32)]
    sent = answered = 0
    enough = asyncio.Event()

    async def worker(session: Session) -> None:
        nonlocal sent, answered
        while not enough.is_set() and (in_flight or sent < calls):
            sent += 1
            try:
                await session.request("tools/call", {"name": CALLED, "arguments": {"text": "restart"}})
            except (httpx2.HTTPError, RuntimeError):
                return  # the gateway went away under this call
            answered += 1
            if answered >= calls:
                enough.set()

    workers = [asyncio.create_task(worker(session)) for session in sessions]
    if in_flight:
        await enough.wait()
    else:
        await asyncio.gather(*workers)
    gateway.process.send_signal(sig)
    await asyncio.gather(*workers)
    for session in sessions:
        await session.close()
    return sent, answered


def spool_cost(rows: int = 20_000) -> float:
    """Microseconds one call spends putting its row in the spool (serialise + write), the
    price of durability on the hot path. Measured on a private spool with no replay thread."""
    from django.utils import timezone

    from relay.spool import Recorder

    class WriteOnly(Recorder):
        def _ensure_thread(self) -> None:
            pass  # measure the write alone: nothing replays this spool into the database

    row = {
        "record_id": secrets.token_hex(16),
        "workspace_id": 1,
        "member_id": 1,
        "member_repr": "bench@example.com",
        "token_prefix": "mng_12345678",
        "server_slug": "s1",
        "tool_name": "echo",
        "method": "tools/call",
        "status": 200,
        "error_code": None,
        "latency_ms": 1,
        "client_ip": "127.0.0.1",
        "client_name": "bench",
        "client_version": "1",
        "session_id": "0123456789abcdef",
        "request_id": "1",
        "shadow_blocked": False,
        "created_at": timezone.now().isoformat(),
    }
    with tempfile.TemporaryDirectory() as directory:
        spool = WriteOnly(directory=Path(directory), max_bytes=2**40, write=lambda rows: None, touch=lambda uses: None)
        spool.record(row)  # opens the segment
        started = time.perf_counter()
        for _ in range(rows):
            spool.record(row)
        elapsed = time.perf_counter() - started
    return elapsed / rows * 1e6


def restart_checks(gateway: Gateway, token: str, gateway_calls: int, summary: Summary) -> None:
    # A graceful restart: SIGTERM right after a burst, while rows still wait in the recorder.
    sent, answered = asyncio.run(restart_under_load(gateway, token, BURST, in_flight=False))
    code = gateway.wait()
    gateway_calls += sent
    rows = tool_call_rows()
    intact, _ = audit_verify()
    ok = rows == gateway_calls and answered == sent and intact
    summary.check(
        "graceful restart",
        ok,
        f"SIGTERM right after {sent} calls; server exit code {code}; {rows} of {gateway_calls} rows written; "
        f"audit_verify {'OK' if intact else 'BROKEN'}",
    )
    # And with calls in flight: each answered call is on record, each cancelled one too (499).
    gateway.start()
    before, before_ok = tool_call_rows(), tool_call_rows(status=200)
    sent, answered = asyncio.run(restart_under_load(gateway, token, BURST, in_flight=True))
    code = gateway.wait()
    rows, rows_ok = tool_call_rows() - before, tool_call_rows(status=200) - before_ok
    intact, _ = audit_verify()
    ok = answered <= rows_ok and rows <= sent and intact
    summary.check(
        "restart under load",
        ok,
        f"SIGTERM with {sent - answered} calls in flight; server exit code {code}; {answered} answered, "
        f"{rows_ok} rows with status 200, {rows - rows_ok} cancelled (499), {sent} sent; "
        f"audit_verify {'OK' if intact else 'BROKEN'}",
    )
    if not ok:
        print(gateway.log_tail())

    # A crash: SIGKILL with calls in flight (an OOM kill looks the same). Every call that
    # got its answer was in the spool first; the next process replays it at start-up.
    gateway.start()
    before_ok = tool_call_rows(status=200)
    sent, answered = asyncio.run(restart_under_load(gateway, token, BURST, in_flight=True, sig=signal.SIGKILL))
    gateway.wait()
    gateway.start()  # the next process adopts the dead one's spool
    rows_ok = wait_for_rows(before_ok + answered, status=200) - before_ok
    lost = max(0, answered - rows_ok)
    intact, _ = audit_verify()
    summary.check(
        "crash (kill -9) under load",
        lost == 0 and intact,
        f"{answered} answered calls, {rows_ok} rows with status 200 after the restart; crash-loss: {lost} rows; "
        f"audit_verify {'OK' if intact else 'BROKEN'}",
    )
    gateway.stop()
    summary.info("cost of durability", f"{spool_cost():.1f} µs per call to put its row in the spool before answering")


# --- scale ------------------------------------------------------------------------------------------


@dataclass
class ScaleData:
    big_token: str = ""
    workspace_tokens: list[tuple[str, str]] = field(default_factory=list)  # (slug, raw token), one per workspace
    unseen: list[str] = field(default_factory=list)  # tokens no request has used yet


def scale_workspaces(many_url: str) -> ScaleData:
    """``big`` (20 upstreams x 50 tools) and ws000..ws499 (5 upstreams x 10 tools), approved,
    pinned, with one workspace token each and ``TOKENS_SMALL`` tokens in all; in bulk."""
    from django.db import transaction

    from apps.accounts.models import User
    from apps.core.secrets import generate
    from apps.gateway.models import ToolPin, UpstreamServer
    from apps.rbac.roles import Role
    from apps.tokens.models import GatewayToken
    from apps.workspaces.models import Membership, Workspace
    from relay.catalog import fingerprint

    owner = User.objects.get(email=OWNER)
    layout = [("big", BIG_SERVERS, BIG_TOOLS)] + [
        (f"ws{n:03d}", MANY_SERVERS, MANY_TOOLS) for n in range(MANY_WORKSPACES)
    ]
    pinned = {
        count: [(t["name"], fingerprint(t), t) for t in tool_definitions(count)] for count in {BIG_TOOLS, MANY_TOOLS}
    }
    data = ScaleData()
    with transaction.atomic():
        workspaces = Workspace.objects.bulk_create(
            Workspace(slug=slug, name=f"Bench {slug}", rate_limit_per_minute=UNLIMITED) for slug, _, _ in layout
        )
        Membership.objects.bulk_create(Membership(workspace=w, user=owner, role=Role.OWNER) for w in workspaces)
        servers = UpstreamServer.objects.bulk_create(
            UpstreamServer(
                workspace=workspace,
                slug=f"u{k:02d}",
                url=f"{many_url}/t{tools}/{workspace.slug}-u{k:02d}",
                prefix=f"u{k:02d}_",
                position=k * 10,
                status=UpstreamServer.Status.APPROVED,
            )
            for workspace, (_, count, tools) in zip(workspaces, layout, strict=True)
            for k in range(1, count + 1)
        )
        tools_of = {workspace.pk: tools for workspace, (_, _, tools) in zip(workspaces, layout, strict=True)}
        ToolPin.objects.bulk_create(
            (
                ToolPin(server=server, tool_name=name, fingerprint=digest, definition=definition)
                for server in servers
                for name, digest, definition in pinned[tools_of[server.workspace_id]]
            ),
            batch_size=2000,
        )
        raws = [(workspace, generate(GatewayToken.SCHEME)) for workspace in workspaces]
        data.big_token = raws[0][1].raw
        data.workspace_tokens = [(w.slug, new.raw) for w, new in raws[1:]]
        extra = [(random.choice(workspaces), generate(GatewayToken.SCHEME)) for _ in range(TOKENS_SMALL - len(raws))]
        data.unseen = [new.raw for _, new in extra]
        bulk_tokens([*raws, *extra])
    return data


def bulk_tokens(pairs) -> None:
    """Workspace tokens with real digests and prefixes, as ``issuetoken`` would store them."""
    from apps.tokens.models import GatewayToken

    GatewayToken.objects.bulk_create(
        (
            GatewayToken(workspace=workspace, kind="workspace", name="bench", prefix=new.prefix, digest=new.digest)
            for workspace, new in pairs
        ),
        batch_size=5000,
    )


def more_tokens(count: int, probes: int) -> tuple[list[str], float]:
    """``count`` more tokens in bulk; returns ``probes`` of their raw values and the seconds it took."""
    from apps.core.secrets import generate
    from apps.tokens.models import GatewayToken
    from apps.workspaces.models import Workspace

    started = time.perf_counter()
    workspaces = list(Workspace.objects.filter(slug__startswith="ws"))
    pairs = [(random.choice(workspaces), generate(GatewayToken.SCHEME)) for _ in range(count)]
    bulk_tokens(pairs)
    return [new.raw for _, new in random.sample(pairs, probes)], time.perf_counter() - started


async def initialize_latencies(base: str, tokens: list[tuple[str, str]]) -> list[float]:
    """One ``initialize`` per (slug, token), one at a time on one connection: the token check
    (a database lookup by digest for a token this process has not seen) plus a minted session."""
    import httpx2

    init = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}).encode()
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    latencies = []
    async with httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=1)) as http:
        for slug, token in tokens:
            started = time.perf_counter()
            response = await http.post(
                base + slug, content=body, headers={**headers, "Authorization": f"Bearer {token}"}
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"initialize in {slug}: HTTP {response.status_code} {response.text[:200]}")
    return latencies


async def list_latencies(sessions: list[Session], calls: int, expect: int | None = None) -> list[float]:
    """``calls`` tools/list, one at a time, each on a random one of ``sessions``."""
    if expect is not None:
        tools = (await sessions[0].request("tools/list", {}))["tools"]
        if len(tools) != expect:
            raise RuntimeError(f"tools/list in {sessions[0].url} listed {len(tools)} tools, not {expect}")
    latencies = []
    for _ in range(calls):
        session = random.choice(sessions)
        started = time.perf_counter()
        await session.request_raw("tools/list", {})
        latencies.append(time.perf_counter() - started)
    return latencies


async def scale_run(gateway: Gateway, token: str, data: ScaleData, summary: Summary, calls: int) -> None:
    # Warm the process up on the throughput workspace, so the code paths are loaded before RSS is read.
    warm = await Session(gateway.url, token).open()
    for _ in range(50):
        await warm.request("tools/list", {})
    await warm.close()
    big = await Session(gateway.base + "big", data.big_token).open()
    await list_latencies([big], 20, expect=BIG_SERVERS * BIG_TOOLS)  # builds and caches the catalog
    rss_before = gateway.rss_mib()

    # Every one of the 500 workspaces: a session, and a tools/list (catalog across 5 upstreams).
    sessions: list[Session] = []
    started = time.perf_counter()
    for index in range(0, len(data.workspace_tokens), 25):  # 25 at a time: sessions open concurrently
        batch = data.workspace_tokens[index : index + 25]
        opened = await asyncio.gather(*(Session(gateway.base + slug, raw).open() for slug, raw in batch))
        await asyncio.gather(*(s.request("tools/list", {}) for s in opened))
        sessions.extend(opened)
    warmed_in = time.perf_counter() - started
    gc_settle = 1.0
    await asyncio.sleep(gc_settle)
    rss_after = gateway.rss_mib()
    per_workspace_kib = (rss_after - rss_before) * 1024 / len(sessions)
    summary.info(
        "memory per workspace",
        f"{per_workspace_kib:.0f} KiB (VmRSS {rss_before:.1f} -> {rss_after:.1f} MiB after loading "
        f"{len(sessions)} workspaces x {MANY_SERVERS} upstreams x {MANY_TOOLS} tools in {warmed_in:.1f} s)",
        value=per_workspace_kib,
    )

    n = max(200, calls // 2)
    big_p50 = p50_ms(await list_latencies([big], n))
    summary.target(
        f"cached tools/list p50, {BIG_SERVERS} upstreams x {BIG_TOOLS} tools",
        big_p50,
        f"{big_p50:.2f} ms (target < {LIST_P50_MS:g} ms)",
        big_p50 < LIST_P50_MS,
    )
    # The warm-up took longer than a catalog lives (relay.catalog.CATALOG_TTL, 30 s): rebuild
    # the catalogs of SAMPLED workspaces first, then list at random among those.
    sampled = random.sample(sessions, SAMPLED)
    await asyncio.gather(*(session.request("tools/list", {}) for session in sampled))
    many_p50 = p50_ms(await list_latencies(sampled, n))
    summary.target(
        f"cached tools/list p50, random one of {SAMPLED} of the {len(sessions)} workspaces",
        many_p50,
        f"{many_p50:.2f} ms (target < {LIST_P50_MS:g} ms)",
        many_p50 < LIST_P50_MS,
    )
    for session in (big, *sessions):
        await session.close()

    # Token checks: unseen tokens against ~2,000 rows, then against 100,000.
    small = p50_ms(
        await initialize_latencies(gateway.base, await asyncio.to_thread(token_slugs, data.unseen[:COLD_PROBES]))
    )
    cached = p50_ms(await initialize_latencies(gateway.base, data.workspace_tokens[:COLD_PROBES]))
    probes, took = await asyncio.to_thread(more_tokens, TOKENS_TOTAL - TOKENS_SMALL, COLD_PROBES)
    total = await asyncio.to_thread(token_count)
    large = p50_ms(await initialize_latencies(gateway.base, await asyncio.to_thread(token_slugs, probes)))
    ok = large <= small * 1.5 + 0.2
    summary.target(
        f"token check p50 with {total:,} tokens",
        large,
        f"unseen token: {small:.2f} ms at {TOKENS_SMALL:,} tokens, {large:.2f} ms at {total:,} "
        f"(O(1): <= 1.5x + 0.2 ms); cached token {cached:.2f} ms; {TOKENS_TOTAL - TOKENS_SMALL:,} tokens "
        f"made in {took:.1f} s",
        ok,
    )


def token_slugs(raws: list[str]) -> list[tuple[str, str]]:
    """(workspace slug, raw token) for each raw token, looked up by digest."""
    from apps.core.secrets import digest
    from apps.tokens.models import GatewayToken

    by_digest = dict(
        GatewayToken.objects.filter(digest__in=[digest(raw) for raw in raws]).values_list("digest", "workspace__slug")
    )
    return [(by_digest[digest(raw)], raw) for raw in raws]


def token_count() -> int:
    from apps.tokens.models import GatewayToken

    return GatewayToken.objects.count()


# --- report ---------------------------------------------------------------------------------------


class Summary:
    """What a configuration's run found: targets (PASS/MISS), checks (PASS/FAIL) and figures.
    Printed as it goes, and kept for the combined summary of ``--config both``."""

    def __init__(self, config: Config) -> None:
        self.config = config.name
        self.lines: list[dict] = []

    def _add(self, kind: str, name: str, detail: str, ok: bool | None, value: float | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else ("MISS" if kind == "target" else "FAIL"))
        self.lines.append({"kind": kind, "name": name, "detail": detail, "verdict": verdict, "value": value})
        print(f"{name}: {detail}" + (f"  {verdict}" if verdict else ""), flush=True)

    def target(self, name: str, value: float, detail: str, ok: bool) -> None:
        self._add("target", name, detail, ok, value)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self._add("check", name, detail, ok)

    def info(self, name: str, detail: str, value: float | None = None) -> None:
        self._add("info", name, detail, None, value)


def report(results: dict[tuple[str, int, str], Stats]) -> None:
    print(f"{'':30}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU ms/call':>13}")
    for method in ("tools/call", "tools/list"):
        for concurrency in (1, 32):
            direct = results[(method, concurrency, "direct")]
            gateway = results[(method, concurrency, "gateway")]
            for target, stats in (("direct", direct), ("gateway", gateway)):
                label = f"{method:12} c={concurrency:<3} {target}"
                cpu = f"{stats.cpu_ms:>13.3f}" if stats.cpu_ms is not None else ""
                print(f"{label:30}{stats.per_second:>10.0f}{stats.p50_ms:>10.2f}{stats.p99_ms:>10.2f}{cpu}")
            print(
                f"{'':30}{'gateway/direct:':>10} throughput {gateway.per_second / direct.per_second:.2f}, "
                f"p50 {gateway.p50_ms / direct.p50_ms:.2f}, p99 {gateway.p99_ms / direct.p99_ms:.2f}"
            )


def throughput_targets(results: dict[tuple[str, int, str], Stats], summary: Summary) -> None:
    added = results[("tools/call", 1, "gateway")].p50_ms - results[("tools/call", 1, "direct")].p50_ms
    share = results[("tools/call", 32, "gateway")].per_second / results[("tools/call", 32, "direct")].per_second
    listed = results[("tools/list", 1, "gateway")].p50_ms
    print()
    for method in ("tools/call", "tools/list"):
        cpu = [results[(method, c, "gateway")].cpu_ms for c in (1, 32)]
        summary.info(f"gateway CPU per {method}", f"{cpu[0]:.3f} ms at c=1, {cpu[1]:.3f} ms at c=32", value=cpu[1])
    summary.target(
        "added p50 latency, tools/call c=1",
        added,
        f"{added:.2f} ms (target <= {ADDED_P50_MS:g} ms)",
        added <= ADDED_P50_MS,
    )
    summary.target(
        "gateway throughput, tools/call c=32",
        share * 100,
        f"{share:.0%} of direct (target >= {C32_SHARE:.0%})",
        share >= C32_SHARE,
    )
    summary.target(
        f"cached tools/list across {SERVERS} upstreams p50",
        listed,
        f"{listed:.2f} ms (target < {LIST_P50_MS:g} ms)",
        listed < LIST_P50_MS,
    )


# --- one configuration ------------------------------------------------------------------------------


def run_config(config: Config, args: argparse.Namespace) -> Summary:
    env = bench_env(config)
    os.environ.update(env)
    import django

    fresh_database(config)
    django.setup()

    summary = Summary(config)
    upstreams = start_upstreams(args.upstream_sse)
    many: subprocess.Popen | None = None
    gateway = Gateway(env, config.name, access_log=args.access_log, server=args.server)
    parts = set(args.parts)
    try:
        token = setup_workspace([url for _, url in upstreams])
        gateway.start()
        print(
            f"MCPNest gateway benchmark [{config.name}]: {os.cpu_count()} CPUs, one {args.server} process, "
            f"{config.label}; "
            f"{SERVERS} upstream processes (mcp SDK fixture server, {'SSE' if args.upstream_sse else 'JSON'} "
            f"responses); {args.rounds} rounds of {args.calls} calls per scenario, direct and gateway alternating",
            flush=True,
        )
        gc.freeze()  # this process's own full collections would show up as latency on both sides
        gateway_calls = 0
        if "throughput" in parts:
            results, gateway_calls = asyncio.run(measure(gateway, upstreams[0][1], token, args.calls, args.rounds))
            report(results)
            throughput_targets(results, summary)
            rows = wait_for_rows(gateway_calls)
            intact, detail = audit_verify()
            summary.check(
                "audit",
                rows == gateway_calls and intact,
                f"{gateway_calls} tools/call through the gateway, {rows} ToolCall rows; "
                f"audit_verify: {'OK' if intact else 'BROKEN'} ({detail})",
            )
        if "restarts" in parts:
            restart_checks(gateway, token, gateway_calls, summary)
        if "scale" in parts:
            gateway.stop()
            many, port = start_child("--serve-many")
            wait_for_port(port, many)
            started = time.perf_counter()
            data = scale_workspaces(f"http://127.0.0.1:{port}")
            print(
                f"scale: {1 + MANY_WORKSPACES} workspaces, {BIG_SERVERS + MANY_WORKSPACES * MANY_SERVERS} upstream "
                f"servers and {TOKENS_SMALL:,} tokens made in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            gateway.start()  # a fresh process: nothing of the above cached yet
            asyncio.run(scale_run(gateway, token, data, summary, args.calls))
    except Exception:
        if gateway.process is not None:
            print(f"--- the end of {gateway.log_path}:\n{gateway.log_tail(40)}")
        raise
    finally:
        if gateway.process is not None and gateway.process.poll() is None:
            gateway.process.kill()
        children = [process for process, _ in upstreams] + ([many] if many else [])
        for process in children:
            process.kill()
        for process in children:
            process.wait()
    return summary


def run_both(args: argparse.Namespace) -> None:
    """Each configuration in a child process (Django is set up once per process, on one
    database), then the combined summary."""
    summaries = []
    for name in CONFIGS:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            child = [sys.executable, __file__, "--config", name, "--summary-json", out.name]
            child += ["--calls", str(args.calls), "--rounds", str(args.rounds), "--parts", ",".join(args.parts)]
            child += ["--upstream-sse"] if args.upstream_sse else []
            child += ["--access-log"] if args.access_log else []
            child += ["--server", args.server]
            print(f"\n=== {name} ===", flush=True)
            code = subprocess.call(child, cwd=ROOT)  # noqa: S603 (our own interpreter and script)
            if code != 0:
                print(f"[{name}] exited with code {code}")
                continue
            summaries.append(json.loads(Path(out.name).read_text()))
    print("\n=== summary ===")
    for summary in summaries:
        for line in summary["lines"]:
            if line["kind"] != "info" or line["value"] is not None:
                verdict = f"  {line['verdict']}" if line["verdict"] else ""
                print(f"[{summary['config']:8}] {line['name']}: {line['detail']}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "both"], default="sqlite", help="what the gateway runs on")
    parser.add_argument("--postgres", action="store_true", help="the same as --config pg-redis")
    parser.add_argument("--calls", type=int, default=1000, help="requests per scenario and round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per scenario (default 3)")
    parser.add_argument(
        "--parts",
        default="throughput,restarts",
        help="comma-separated: throughput, restarts, scale (default: the first two)",
    )
    parser.add_argument("--scale", action="store_true", help="add the scale part")
    parser.add_argument("--upstream-sse", action="store_true", help="upstreams answer with SSE streams, not JSON")
    parser.add_argument(
        "--access-log", action="store_true", help="the server writes an access log (the README's command does not)"
    )
    parser.add_argument(
        "--server", choices=["uvicorn", "daphne"], default="uvicorn", help="the ASGI server the gateway process runs on"
    )
    parser.add_argument("--summary-json", help=argparse.SUPPRESS)
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-many", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.upstream_sse)
        return
    if args.serve_many:
        serve_many_tools(args.serve_many)
        return
    args.parts = [part for part in args.parts.split(",") if part] + (["scale"] if args.scale else [])
    unknown = set(args.parts) - {"throughput", "restarts", "scale"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.postgres:
        args.config = "pg-redis"
    if args.config == "both":
        run_both(args)
        return
    summary = run_config(CONFIGS[args.config], args)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps({"config": summary.config, "lines": summary.lines}))


if __name__ == "__main__":
    main()
