"""One tenant cannot starve another: upstream calls hold a slot of their upstream server and
of their workspace, wait for one at most MCPNEST_GATEWAY_QUEUE_SECONDS and are then refused
as busy (-32005, recorded as 503); the process-wide connection pool is far larger and its
wait bounded too. Each upstream may have its own timeout and concurrency limit."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest
from asgiref.sync import sync_to_async
from mcp.server import MCPServer

from apps.gateway.models import UpstreamServer
from apps.gateway.services import server_add
from apps.gateway.snapshots import one_off_pool, relay_settings, workspace_config
from apps.workspaces.services import workspace_set_rate_limit
from relay.config import UpstreamConfig
from relay.http1 import UpstreamTransport
from relay.limits import Busy, CallLimits
from relay.upstream import MAX_CONNECTIONS, UpstreamError
from tests.gateway import test_upstream_faults as faults
from tests.gateway.upstream import running

session = faults.session  # the fixture: ``await session()``, ``await session(dave, workspace=globex)``


def build_sleepy() -> MCPServer:
    server = MCPServer("sleepy", version="1.0")

    @server.tool(description="Sleep, then answer.")
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    return server


@pytest.fixture(scope="module")
def sleepy():
    with running(build_sleepy()) as server:
        yield server


# --- through the gateway ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_flood_of_slow_calls_in_one_workspace_leaves_another_untouched(
    cast, upstream, sleepy, session, settings, relay_gateway, rows
):
    settings.MCPNEST_GATEWAY_QUEUE_SECONDS = 1
    flood, capacity = 250, settings.MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY

    def setup() -> UpstreamServer:
        workspace_set_rate_limit(access=cast.access(cast.alice), per_minute=10_000)
        server_add(access=cast.access(cast.dave, cast.globex), slug="fix", url=upstream.url)
        return server_add(access=cast.access(cast.alice), slug="sleepy", url=sleepy.url)

    slow_server = await sync_to_async(setup)()
    acme, globex = await session(), await session(cast.dave, workspace=cast.globex)

    async def nap() -> tuple[float, dict]:
        started = time.monotonic()
        answer = await acme.call("tools/call", name="nap", arguments={"seconds": 6})
        return time.monotonic() - started, answer

    naps = [asyncio.ensure_future(nap()) for _ in range(flood)]
    limits = relay_gateway.pool.limits
    async with asyncio.timeout(10):
        while limits.in_flight(server_id=slow_server.pk) < capacity:
            await asyncio.sleep(0.02)

    started = time.monotonic()
    echoed = await globex.call("tools/call", name="echo", arguments={"text": "B"})
    assert echoed["result"]["content"][0]["text"] == "B"
    assert time.monotonic() - started < 2  # not a benchmark: without the limits it waits for acme's naps

    answers = await asyncio.gather(*naps)
    rested = [elapsed for elapsed, answer in answers if "result" in answer]
    busy = [(elapsed, answer["error"]) for elapsed, answer in answers if "error" in answer]
    assert len(rested) == capacity and len(busy) == flood - capacity
    for elapsed, error in busy:
        assert error["code"] == -32005
        assert error["message"].startswith("Upstream server sleepy is busy: it has 32 calls in flight")
        assert "MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY" in error["message"]
        assert "MCPNEST_GATEWAY_QUEUE_SECONDS" in error["message"]
        assert elapsed < 5  # refused after the 1 s queue, not after the 60 s call timeout

    calls = await sync_to_async(rows)(tool_name="nap")
    assert len(calls) == flood and {row.workspace_id for row in calls} == {cast.acme.pk}
    assert sum(1 for row in calls if (row.status, row.error_code) == (200, None)) == capacity
    assert sum(1 for row in calls if (row.status, row.error_code) == (503, -32005)) == flood - capacity
    (echo,) = await sync_to_async(rows)(tool_name="echo")
    assert (echo.workspace_id, echo.status) == (cast.globex.pk, 200)
    assert limits.in_flight(server_id=slow_server.pk) == limits.in_flight(workspace_id=cast.acme.pk) == 0


@pytest.mark.django_db(transaction=True)
async def test_a_servers_own_timeout_and_limit_reach_the_gateway(cast, sleepy, session, settings, rows):
    settings.MCPNEST_GATEWAY_QUEUE_SECONDS = 0.5

    def setup():
        server = server_add(
            access=cast.access(cast.alice), slug="sleepy", url=sleepy.url, timeout_seconds=1, max_concurrency=1
        )
        return server, workspace_config("acme").servers[0].upstream

    server, config = await sync_to_async(setup)()
    assert (server.timeout_seconds, server.max_concurrency) == (1, 1)
    if config.timeout_seconds is None:
        pytest.skip(
            "runtime.state does not pass the server's timeout_seconds and max_concurrency to UpstreamConfig yet"
        )
    s = await session()
    first = asyncio.ensure_future(s.call("tools/call", name="nap", arguments={"seconds": 3}))
    await asyncio.sleep(0.3)
    second = await s.call("tools/call", name="nap", arguments={"seconds": 0})
    assert second["error"]["code"] == -32005 and "the server's max concurrency" in second["error"]["message"]
    started = time.monotonic()
    timed_out = await first
    assert timed_out["error"] == {"code": -32000, "message": "Upstream server sleepy timed out"}
    assert time.monotonic() - started < 2
    statuses = [(row.status, row.error_code) for row in await sync_to_async(rows)(tool_name="nap")]
    assert statuses == [(503, -32005), (504, -32000)]


# --- the upstream layer -------------------------------------------------------------------------


async def test_an_upstream_call_waits_at_most_the_servers_own_timeout(sleepy, settings):
    config = UpstreamConfig(server_id=9001, slug="sleepy", url=sleepy.url, timeout_seconds=1)
    pool = one_off_pool()
    assert pool.get(UpstreamConfig(server_id=1, slug="x", url=sleepy.url)).timeout == (
        settings.MCPNEST_GATEWAY_UPSTREAM_TIMEOUT
    )
    upstream = pool.get(config)
    assert upstream.timeout == 1
    result = await upstream.call(
        "tools/call", {"name": "nap", "arguments": {"seconds": 0}}, workspace_id=1, workspace_slug="w"
    )
    assert result["content"][0]["text"] == "rested"
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        await upstream.call(
            "tools/call", {"name": "nap", "arguments": {"seconds": 3}}, workspace_id=1, workspace_slug="w"
        )
    assert (caught.value.status, caught.value.timeout, caught.value.code) == (504, True, -32000)
    assert time.monotonic() - started < 2
    # A new timeout for the same server reuses its connection state.
    longer = UpstreamConfig(server_id=9001, slug="sleepy", url=sleepy.url, timeout_seconds=5)
    assert pool.get(longer) is upstream and upstream.config is longer
    assert pool.limits.in_flight(server_id=9001) == 0
    await pool.aclose()


async def test_the_connection_pool_is_large_and_waiting_for_it_is_bounded():
    assert MAX_CONNECTIONS >= 2000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))[15:])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    try:
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=limits, pool_timeout=0.2)) as http:
            async with http.stream("POST", url, content=b"{}"):  # holds the only connection
                started = time.monotonic()
                with pytest.raises(httpx2.PoolTimeout, match="all 1 upstream connections are in use"):
                    await http.post(url, content=b"{}", timeout=60)  # the request's own pool timeout: 60 s
                assert time.monotonic() - started < 1
            assert (await http.post(url, content=b"{}")).json() == {}
    finally:
        server.close()


# --- the limits themselves ----------------------------------------------------------------------


def config_of(server_id: int, slug: str, max_concurrency: int | None = None) -> UpstreamConfig:
    return UpstreamConfig(server_id=server_id, slug=slug, url="http://127.0.0.1:9/mcp", max_concurrency=max_concurrency)


async def test_slots_per_upstream_and_per_workspace(settings):
    settings.MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY = 3
    settings.MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY = 2
    settings.MCPNEST_GATEWAY_QUEUE_SECONDS = 0.2
    limits = CallLimits()
    docs, git, wiki = config_of(1, "docs"), config_of(2, "git"), config_of(3, "wiki")

    held = [
        await limits.acquire(10, "acme", docs, relay_settings()),
        await limits.acquire(10, "acme", docs, relay_settings()),
    ]
    started = time.monotonic()
    with pytest.raises(Busy) as full_upstream:
        await limits.acquire(10, "acme", docs, relay_settings())
    assert 0.15 < time.monotonic() - started < 1
    assert str(full_upstream.value) == (
        "Upstream server docs is busy: it has 2 calls in flight, its limit (MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY), "
        "and none finished within 0.2 s (MCPNEST_GATEWAY_QUEUE_SECONDS). Retry later."
    )
    held.append(await limits.acquire(10, "acme", git, relay_settings()))  # acme's third and last slot
    with pytest.raises(Busy) as full_workspace:
        await limits.acquire(10, "acme", git, relay_settings())
    assert str(full_workspace.value).startswith(
        "Workspace acme is busy: it has 3 upstream calls in flight, its limit (MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY)"
    )
    assert limits.in_flight(server_id=2) == 1  # the refused call gave back the upstream slot it had taken
    other = await asyncio.wait_for(
        limits.acquire(20, "globex", wiki, relay_settings()), 0.05
    )  # another workspace: no wait
    limits.release(other)

    # A queued call gets the first slot that frees within the queue time.
    waiting = asyncio.ensure_future(limits.acquire(10, "acme", docs, relay_settings()))
    await asyncio.sleep(0.05)
    limits.release(held.pop(0))
    held.append(await waiting)
    for slots in held:
        limits.release(slots)
    assert limits.in_flight(workspace_id=10) == limits.in_flight(server_id=1) == 0


async def test_a_servers_own_limit_and_a_changed_limit(settings):
    settings.MCPNEST_GATEWAY_QUEUE_SECONDS = 0.1
    limits = CallLimits()
    held = await limits.acquire(1, "acme", config_of(5, "solo", max_concurrency=1), relay_settings())
    with pytest.raises(Busy, match=r"its limit \(the server's max concurrency\)"):
        await limits.acquire(1, "acme", config_of(5, "solo", max_concurrency=1), relay_settings())
    # Raised by an operator: the new limit applies at once; the call in flight releases its old slot.
    again = await asyncio.wait_for(
        limits.acquire(1, "acme", config_of(5, "solo", max_concurrency=2), relay_settings()), 0.05
    )
    limits.release(held)
    limits.release(again)
    assert limits.in_flight(server_id=5) == 0


async def test_idle_slots_are_forgotten_so_memory_stays_bounded():
    limits = CallLimits(max_keys=10)
    busy = await limits.acquire(1, "acme", config_of(0, "busy"), relay_settings())
    for server_id in range(1, 100):
        limits.release(await limits.acquire(1, "acme", config_of(server_id, f"s{server_id}"), relay_settings()))
    assert len(limits._upstreams) <= 10 and limits.in_flight(server_id=0) == 1  # a busy one is kept
    limits.release(busy)
