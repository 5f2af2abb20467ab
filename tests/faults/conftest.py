"""Fixtures for the fault tests: real processes, real faults.

* ``world(servers=[(workspace, slug, url)])`` — the cast (acme: alice Owner, bob Admin,
  carol Member; globex: dave Owner) in this test's own database, built with the real
  services, with tokens (``.tokens[name]``, ``.prefixes[name]``). Transactional.
* ``gateway_process(...)`` — starts a real uvicorn gateway (``GatewayProcess``: ``url``,
  ``kill9()``, ``terminate()``, ``restart()``, ``rss()``, ``log_tail()``); by default on
  this test's database, without Redis, ``MCPNEST_SPOOL_DIR=<tmp_path>/spool``.
  ``gateway_process.many(n, ...)`` starts n at once.
* ``redis_server`` — a private ``redis-server`` (``RedisServer``: ``url``, ``stop()``,
  ``start(from_snapshot=...)``, ``snapshot()``); skips without the binary.
* ``pg_cluster`` — a throwaway, migrated PostgreSQL cluster (``PgCluster``: ``database_url``,
  ``stop()`` immediate, ``start()``); module-scoped; skips without initdb.
* ``mcp_upstream`` — the fixture MCP server (echo/add/…), session-scoped.

Every process is killed at teardown; a per-test watchdog (``WATCHDOG_SECONDS`` in the test
module, default 120) dumps the stacks and kills them all if a test hangs; a failing test's
report carries the tail of every log its processes wrote.
"""

from __future__ import annotations

import faulthandler
import sys
import threading
from pathlib import Path

import pytest

from tests.faults import procs
from tests.faults.procs import GatewayProcess, PgCluster, RedisServer
from tests.faults.setup_data import World, build
from tests.faults.upstreams import serve_mcp
from tests.gateway.upstream import build_server

DEFAULT_WATCHDOG_SECONDS = 120


# --- harness: watchdog and log tails ------------------------------------------------------


@pytest.fixture(autouse=True)
def _faults_watchdog(request):
    procs.started_logs.clear()
    limit = getattr(request.module, "WATCHDOG_SECONDS", DEFAULT_WATCHDOG_SECONDS)

    def fire() -> None:
        sys.__stderr__.write(f"\n!!! {request.node.nodeid} ran over {limit}s: dumping stacks, killing its processes\n")
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        procs.kill_everything()

    timer = threading.Timer(limit, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "tests/faults" not in str(item.path).replace("\\", "/"):
        return
    with procs._registry_lock:
        live = [(getattr(obj, "name", type(obj).__name__), getattr(obj, "log", None)) for obj in procs._registry]
    seen: set[Path] = set()
    for name, path in [*procs.started_logs, *live]:
        if path is None or path in seen:
            continue
        seen.add(path)
        report.sections.append((f"log tail: {name} ({path})", procs.tail(path, 6000)))


@pytest.fixture
def world(transactional_db):
    """``world(servers=[("acme", "fix", url)])`` builds the cast in this test's database."""

    def make(servers=()) -> World:
        return build(servers=servers)

    return make


# --- processes ------------------------------------------------------------------------------


class Gateways:
    """The ``gateway_process`` fixture: start uvicorn gateways; all stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.spool_dir = tmp_path / "spool"
        self.started: list[GatewayProcess] = []

    def __call__(
        self,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        spool_dir: Path | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        wait: bool = True,
    ) -> GatewayProcess:
        gateway = GatewayProcess(
            name=name or f"gw{len(self.started) + 1}",
            database_url=database_url or procs.subprocess_database_url(),
            log_dir=self.tmp_path,
            spool_dir=spool_dir or self.spool_dir,
            redis_url=redis_url,
            env=env,
        )
        self.started.append(gateway)
        return gateway.start(wait=wait)

    def many(self, count: int, **kwargs) -> list[GatewayProcess]:
        """Start ``count`` gateways at once (uvicorn takes seconds to import Django)."""
        gateways = [self(wait=False, **kwargs) for _ in range(count)]
        for gateway in gateways:
            gateway.wait_ready()
        return gateways

    def stop_all(self) -> None:
        for gateway in reversed(self.started):
            gateway.stop()


@pytest.fixture
def gateway_process(tmp_path):
    gateways = Gateways(tmp_path)
    try:
        yield gateways
    finally:
        gateways.stop_all()


@pytest.fixture
def redis_server(tmp_path):
    if RedisServer.binary() is None:
        pytest.skip("needs redis-server on PATH")
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_cluster():
    reason = procs.postgres_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.init().start()
        cluster.database_url = cluster.create_database("mcpnest")
        migrated = procs.manage("migrate", "--noinput", database_url=cluster.database_url, timeout=300)
        assert migrated.returncode == 0, f"migrate failed:\n{migrated.stdout}\n{migrated.stderr}"
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def mcp_upstream():
    with serve_mcp(build_server("faults")) as served:
        yield served
