"""Bridge benchmark: many callers multiplexed over one stdio pipe.

    .venv/bin/python bench/bridge.py [--seconds S] [--sleep-ms MS] [--concurrency N]

Starts ``python -m bridge`` over the SDK fixture server of ``tests/bridge/stdio_server.py``
and calls its ``sleep`` tool (10 ms by default) through ``/mcp`` from one 2025-era session
(initialize once, JSON answers, keep-alive connections), first one request at a time, then
at concurrency 16. One request at a time is the baseline: it is what a bridge that
serialises calls on its pipe would give at any concurrency. Prints calls/s and latency
percentiles for both, and the ratio against the 5x target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bridge.conftest import launch

TARGET = 5.0
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def _session(http: httpx2.AsyncClient) -> dict[str, str]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    opened = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    return session


async def _round(url: str, *, concurrency: int, seconds: float, sleep_ms: int) -> tuple[float, list[float]]:
    """(calls/s, latencies in ms) of ``concurrency`` callers calling for ``seconds``."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(base_url=url, headers=HEADERS, timeout=30, limits=limits) as http:
        session = await _session(http)
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        async def caller(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                call = {
                    "jsonrpc": "2.0",
                    "id": f"{n}-{i}",
                    "method": "tools/call",
                    "params": {"name": "sleep", "arguments": {"ms": sleep_ms, "tag": f"{n}-{i}"}},
                }
                started = time.perf_counter()
                reply = (await http.post("/mcp", json=call, headers=session)).json()
                latencies.append((time.perf_counter() - started) * 1000)
                if reply["result"]["content"][0]["text"] != f"{n}-{i}":
                    raise AssertionError(f"caller {n} got someone else's answer: {reply}")

        started = time.monotonic()
        await asyncio.gather(*(caller(n) for n in range(concurrency)))
        return len(latencies) / (time.monotonic() - started), latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _bench(url: str, args: argparse.Namespace) -> float:
    await _round(url, concurrency=4, seconds=0.5, sleep_ms=args.sleep_ms)  # warm up
    rates = {}
    for concurrency in (1, args.concurrency):
        rate, latencies = await _round(url, concurrency=concurrency, seconds=args.seconds, sleep_ms=args.sleep_ms)
        rates[concurrency] = rate
        print(
            f"concurrency {concurrency:>3}: {rate:8.1f} calls/s   latency ms p50 {statistics.median(latencies):6.1f}"
            f"  p95 {_percentile(latencies, 0.95):6.1f}  p99 {_percentile(latencies, 0.99):6.1f}"
            f"  ({len(latencies)} calls)"
        )
    ratio = rates[args.concurrency] / rates[1]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio: {ratio:.2f}x at concurrency {args.concurrency} vs one at a time ({verdict} the {TARGET:g}x target)")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured round")
    parser.add_argument("--sleep-ms", type=int, default=10, help="how long the tool sleeps")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    bridge = launch(f"{sys.executable} {Path(__file__).resolve().parents[1] / 'tests/bridge/stdio_server.py'}")
    try:
        bridge.wait_ready()
        ratio = asyncio.run(_bench(bridge.url, args))
    finally:
        bridge.stop()
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
