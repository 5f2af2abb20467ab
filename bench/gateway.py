"""Gateway benchmark: real upstream MCP servers, the gateway under daphne, a raw httpx2 client.

    .venv/bin/python bench/gateway.py [--calls N] [--rounds R] [--postgres] [--upstream-sse]

What runs (each its own process, all on 127.0.0.1):

* 5 upstreams: the fixture server of ``tests/gateway/upstream.py`` (the official ``mcp``
  SDK's MCPServer under uvicorn), answering with JSON bodies (``--upstream-sse`` for SSE
  streams). JSON is the default because it is the fairer comparison: with SSE the SDK
  server is slower on the direct client's 2025 session than on the gateway's stateless
  2026-07-28 requests, which flatters the gateway (it then reaches ~90% of direct);
* one gateway process: ``daphne -b 127.0.0.1 -p PORT mcpnest.asgi:application`` (daphne's
  defaults, access log included) against a fresh bench database: SQLite
  ``var/bench-gateway.sqlite3`` and in-process counters, or with ``--postgres`` the
  ``mcpnest_bench_gw`` database and Redis db 1. Its output goes to
  ``var/bench-gateway-daphne.log``;
* this script: sets the workspace up with the operator commands (5 servers ``s1``..``s5``,
  enforcement ``enforce``, an allowlist naming each of the 20 tools, a rate limit that never
  trips, a member token), then drives ``tools/call`` (``s1_echo``) and ``tools/list``
  straight at upstream s1 and through the gateway, at concurrency 1 and 32, in alternating
  rounds (calls/s: the median round; percentiles: all rounds). Every client holds a
  2025-era session (initialize once, reuse ``Mcp-Session-Id``) and one keep-alive
  connection. Then the audit checks: one ToolCall row per ``tools/call`` sent through the
  gateway and ``audit_verify`` intact; SIGTERM right after a burst of calls (the rows still
  queued in the recorder are written at exit: all must be there); SIGTERM with calls in
  flight (every answered call has its row; calls cancelled by the shutdown are on record
  with status 499; a request daphne had not yet read leaves none, as it never ran); and a
  crash: SIGKILL with calls in flight, then a new process on the same audit spool, which
  must replay every answered call's row (the crash-loss count must be 0). Last, the cost of
  durability: the microseconds a call spends appending its row to the spool before the
  answer goes out.

Targets (2-core machine, one gateway process): added p50 latency at concurrency 1 <= 2 ms;
gateway throughput at concurrency 32 >= 50% of direct; cached tools/list across 5
upstreams p50 < 2 ms. The script prints PASS/FAIL per target and exits 0 either way.

Measured on a 2-vCPU VM (Python 3.11, defaults: 3 rounds of 1000 calls, JSON upstreams).
The bench client, daphne and the upstream share the two cores, and the VM is shared: the
direct baseline moves by about 10% from run to run, the gateway's numbers by less.

    embedded defaults (SQLite, in-process counters)
                                     calls/s    p50 ms    p99 ms
    tools/call   c=1   direct            858      1.13      1.66
    tools/call   c=1   gateway           414      2.29      5.37
    tools/call   c=32  direct           1593     19.22     47.07
    tools/call   c=32  gateway           893     33.18     71.22
    tools/list   c=1   direct            925      1.04      1.68
    tools/list   c=1   gateway           837      1.16      1.90
    tools/list   c=32  direct           2142     14.41     21.32
    tools/list   c=32  gateway          1932     15.60     28.63
    added p50 at c=1: 1.16 ms  PASS;  c=32 throughput: 56% of direct  PASS;
    cached tools/list p50: 1.16 ms  PASS;  audit rows, restart checks: PASS

    --postgres (PostgreSQL + Redis)
                                     calls/s    p50 ms    p99 ms
    tools/call   c=1   direct            843      1.15      1.86
    tools/call   c=1   gateway           376      2.50      7.96
    tools/call   c=32  direct           1527     20.18     50.80
    tools/call   c=32  gateway           814     35.98     73.71
    tools/list   c=1   direct            906      1.06      1.59
    tools/list   c=1   gateway           698      1.38      2.38
    tools/list   c=32  direct           2132     14.51     41.61
    tools/list   c=32  gateway          1460     19.99     46.19
    added p50 at c=1: 1.34 ms  PASS;  c=32 throughput: 53% of direct  PASS;
    cached tools/list p50: 1.38 ms  PASS;  audit rows, restart checks: PASS

With the audit spool, keyed chains, database epochs and per-tenant limits (issue #6), on
the same VM on a day it ran about 4.5 times slower (the direct baseline: 181 calls/s at c=1,
418 at c=32, against 858 and 1593 above), so read the ratios:

    embedded defaults, --calls 1000 --rounds 2
    tools/call   c=1   gateway/direct: throughput 0.43, p50 2.32 (above: 0.48, 2.03)
    tools/call   c=32  gateway/direct: throughput 0.50 (above: 0.56)
    tools/list   c=1   gateway/direct: throughput 0.73, p50 1.33
    audit rows, graceful restarts: PASS
    crash (kill -9) under load: 1009 answered calls, 1009 rows after the restart; crash-loss: 0
    cost of durability: 14.1 µs per call (on that slow day; about a fifth of that at full speed)

Where a gateway call's CPU goes now (py-spy, c=32, ~0.8 ms per call in all): daphne and
Twisted ~30%, the upstream request ~20% (httpx2 over ``runtime.http1``), Django's
handler, request and response ~12%, the audit recorder's thread ~10% (Django's
``bulk_create`` of the hash-chained rows, ~0.1 ms a row), the view and engine ~15%, and
with ``--postgres`` the Redis round trip of the rate limit, ~0.1 ms (redis-py's own
overhead; the next thing to cut if PostgreSQL + Redis must gain more margin). Before the
changes that came with this benchmark, the gateway managed ~150 calls/s at c=32 (19% of
direct) and added 3.4 ms at c=1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


# --- processes ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:.0f} s")


def serve_upstream(port: int, sse: bool) -> None:
    """Child mode: one fixture MCP server in this process, until killed."""
    import logging

    import uvicorn

    from tests.gateway.upstream import build_server

    logging.getLogger("mcp").setLevel(logging.WARNING)  # no line per session opened or closed

    app = build_server("bench").streamable_http_app(json_response=not sse)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def start_upstreams(sse: bool) -> list[tuple[subprocess.Popen, str]]:
    started = []
    for _ in range(SERVERS):
        port = _free_port()
        args = [sys.executable, __file__, "--serve-upstream", str(port), *(["--upstream-sse"] if sse else [])]
        process = subprocess.Popen(args, cwd=ROOT)  # noqa: S603 (our own interpreter and script)
        started.append((process, port))
    try:
        for process, port in started:
            _wait_for_port(port, process, "upstream")
    except BaseException:
        for process, _ in started:
            process.kill()
        raise
    return [(process, f"http://127.0.0.1:{port}/mcp") for process, port in started]


class Gateway:
    """One daphne process serving mcpnest.asgi:application; stderr goes to a log file."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/gw/{SLUG}"
        self.log_path = ROOT / "var" / "bench-gateway-daphne.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no var/ yet
        self._env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        daphne = str(Path(sys.executable).parent / "daphne")
        self._log = self.log_path.open("a" if self.process else "w")
        args = [daphne, "-b", "127.0.0.1", "-p", str(self.port), "mcpnest.asgi:application"]
        self.process = subprocess.Popen(args, cwd=ROOT, env=self._env, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603
        _wait_for_port(self.port, self.process, "daphne")

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for daphne to exit (after a SIGTERM, as a process manager sends on a restart)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --- database and workspace -------------------------------------------------------------------


def bench_env(postgres: bool) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="mcpnest.settings.base",
        DEBUG="0",
        SECRET_KEY="bench-" + secrets.token_urlsafe(48),
        MCPNEST_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        MCPNEST_AUDIT_KEYS="bench-" + secrets.token_urlsafe(48),
        MCPNEST_SPOOL_DIR=str(SPOOL_DIR),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{PG_DB}" if postgres else f"sqlite:///{SQLITE_PATH}",
        REDIS_URL=REDIS_BENCH_URL if postgres else "",
    )
    return env


def fresh_database(postgres: bool) -> None:
    if postgres:
        import psycopg
        import redis

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
        client = redis.Redis.from_url(REDIS_BENCH_URL)
        keys = list(client.scan_iter("gw:*"))
        if keys:
            client.delete(*keys)
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
    rules = [f"s{index}:{tool}" for index in range(1, SERVERS + 1) for tool in TOOLS]
    call_command("allowtools", SLUG, OWNER, *rules, stdout=quiet)
    call_command("enforcement", SLUG, "enforce", stdout=quiet)
    call_command("ratelimit", SLUG, 1_000_000_000, stdout=quiet)
    token = io.StringIO()
    call_command("issuetoken", SLUG, member=OWNER, name="bench", stdout=token, stderr=quiet)
    return token.getvalue().strip()


def tool_call_rows(status: int | None = None) -> int:
    from django.db import close_old_connections

    from apps.audit.models import ToolCall

    close_old_connections()
    rows = ToolCall.objects.filter(workspace__slug=SLUG, method="tools/call")
    return (rows if status is None else rows.filter(status=status)).count()


def wait_for_rows(expected: int, timeout: float = 60.0) -> int:
    """The recorder writes in the background: poll until every row is in (or time runs out)."""
    deadline = time.monotonic() + timeout
    rows = tool_call_rows()
    while rows < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = tool_call_rows()
    return rows


def wait_for_rows_with_status(expected: int, *, status: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    rows = tool_call_rows(status=status)
    while rows < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = tool_call_rows(status=status)
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


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


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


async def measure(direct_url: str, gateway_url: str, token: str, calls: int, rounds: int) -> tuple[dict, int]:
    """Every scenario, direct and through the gateway in alternating rounds (so a slow
    moment of a shared machine does not land on one side only): the median round's
    calls/s and the percentiles of all rounds' latencies. Returns the results and the
    number of tools/call requests sent through the gateway."""
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
            for round_ in range(rounds + 1):  # round 0 warms up
                for target in ("direct", "gateway"):
                    if method == "tools/call":
                        params = {**params, "name": "echo" if target == "direct" else CALLED}
                        gateway_calls += (warmup if round_ == 0 else calls) if target == "gateway" else 0
                    rate, lat = await drive(sessions[target], method, params, warmup if round_ == 0 else calls)
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
                )
        for session in (*sessions["direct"], *sessions["gateway"]):
            await session.close()
    return results, gateway_calls


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
    import tempfile

    from django.test import override_settings
    from django.utils import timezone

    from apps.gateway.runtime.recorder import Recorder

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
    with tempfile.TemporaryDirectory() as directory, override_settings(MCPNEST_SPOOL_DIR=directory):
        spool = WriteOnly()
        spool.record(row)  # opens the segment
        started = time.perf_counter()
        for _ in range(rows):
            spool.record(row)
        elapsed = time.perf_counter() - started
    return elapsed / rows * 1e6


# --- report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: dict[tuple[str, int, str], Stats]) -> None:
    print(f"{'':30}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for method in ("tools/call", "tools/list"):
        for concurrency in (1, 32):
            direct = results[(method, concurrency, "direct")]
            gateway = results[(method, concurrency, "gateway")]
            for target, stats in (("direct", direct), ("gateway", gateway)):
                label = f"{method:12} c={concurrency:<3} {target}"
                print(f"{label:30}{stats.per_second:>10.0f}{stats.p50_ms:>10.2f}{stats.p99_ms:>10.2f}")
            print(
                f"{'':30}{'gateway/direct:':>10} throughput {gateway.per_second / direct.per_second:.2f}, "
                f"p50 {gateway.p50_ms / direct.p50_ms:.2f}, p99 {gateway.p99_ms / direct.p99_ms:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="requests per scenario and round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per scenario (default 3)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis instead of the embedded defaults")
    parser.add_argument("--upstream-sse", action="store_true", help="upstreams answer with SSE streams, not JSON")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.upstream_sse)
        return

    env = bench_env(args.postgres)
    os.environ.update(env)
    import django

    fresh_database(args.postgres)
    django.setup()

    upstreams = start_upstreams(args.upstream_sse)
    gateway = Gateway(env)
    try:
        token = setup_workspace([url for _, url in upstreams])
        gateway.start()
        store = "PostgreSQL + Redis" if args.postgres else "SQLite + in-process counters (embedded defaults)"
        print(
            f"MCPNest gateway benchmark: {os.cpu_count()} CPUs, one daphne process, {store}; "
            f"{SERVERS} upstream processes (mcp SDK fixture server, {'SSE' if args.upstream_sse else 'JSON'} "
            f"responses); {args.rounds} rounds of {args.calls} calls per scenario, direct and gateway alternating"
        )
        gc.freeze()  # this process's own full collections would show up as latency on both sides
        results, gateway_calls = asyncio.run(measure(upstreams[0][1], gateway.url, token, args.calls, args.rounds))
        report(results)

        added = results[("tools/call", 1, "gateway")].p50_ms - results[("tools/call", 1, "direct")].p50_ms
        share = results[("tools/call", 32, "gateway")].per_second / results[("tools/call", 32, "direct")].per_second
        listed = results[("tools/list", 1, "gateway")].p50_ms
        print()
        print(f"added p50 latency, tools/call c=1: {added:.2f} ms (target <= 2 ms)  {verdict(added <= 2)}")
        print(f"gateway throughput, tools/call c=32: {share:.0%} of direct (target >= 50%)  {verdict(share >= 0.5)}")
        print(
            f"cached tools/list across {SERVERS} upstreams p50: {listed:.2f} ms (target < 2 ms)  {verdict(listed < 2)}"
        )

        rows = wait_for_rows(gateway_calls)
        intact, detail = audit_verify()
        print(
            f"audit: {gateway_calls} tools/call through the gateway, {rows} ToolCall rows; audit_verify: "
            f"{'OK' if intact else 'BROKEN'} ({detail})  {verdict(rows == gateway_calls and intact)}"
        )

        # A graceful restart: SIGTERM right after a burst, while rows still wait in the recorder.
        sent, answered = asyncio.run(restart_under_load(gateway, token, BURST, in_flight=False))
        code = gateway.wait()
        gateway_calls += sent
        rows = tool_call_rows()
        intact, _ = audit_verify()
        ok = rows == gateway_calls and answered == sent and intact
        print(
            f"graceful restart: SIGTERM right after {sent} calls; daphne exit code {code}; {rows} of "
            f"{gateway_calls} rows written; audit_verify {'OK' if intact else 'BROKEN'}  {verdict(ok)}"
        )
        # And with calls in flight: each answered call is on record, each cancelled one too (499).
        gateway.start()
        before = tool_call_rows()
        before_ok = tool_call_rows(status=200)
        sent, answered = asyncio.run(restart_under_load(gateway, token, BURST, in_flight=True))
        code = gateway.wait()
        rows, rows_ok = tool_call_rows() - before, tool_call_rows(status=200) - before_ok
        intact, _ = audit_verify()
        ok = answered <= rows_ok and rows <= sent and intact
        print(
            f"restart under load: SIGTERM with {sent - answered} calls in flight; daphne exit code {code}; "
            f"{answered} answered calls, {rows_ok} rows with status 200, {rows - rows_ok} cancelled (499), "
            f"{sent} sent; audit_verify {'OK' if intact else 'BROKEN'}  {verdict(ok)}"
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
        rows_ok = wait_for_rows_with_status(before_ok + answered, status=200) - before_ok
        lost = max(0, answered - rows_ok)
        intact, _ = audit_verify()
        print(
            f"crash (kill -9) under load: {answered} answered calls, {rows_ok} rows with status 200 after the "
            f"restart; crash-loss: {lost} rows; audit_verify {'OK' if intact else 'BROKEN'}  "
            f"{verdict(lost == 0 and intact)}"
        )
        gateway.process.send_signal(signal.SIGTERM)
        gateway.wait()
        print(f"cost of durability: {spool_cost():.1f} µs per call to put its row in the spool before answering")
    finally:
        if gateway.process is not None and gateway.process.poll() is None:
            gateway.process.kill()
        for process, _ in upstreams:
            process.kill()
        for process, _ in upstreams:
            process.wait()


if __name__ == "__main__":
    main()
