"""One workspace's slow upstream cannot starve another workspace.

acme's upstream has a tool that sleeps 20 s; 200 calls to it are fired at once. globex's
call to its own fast upstream must still answer within 2 s (a correctness bound, not a
benchmark), and the slow calls beyond acme's share are refused as busy — a JSON-RPC error,
503 with Retry-After or 200 (2025 sessions carry errors in 200) — within seconds, not left
waiting for 20. Everything is cancelled at the end, so nothing waits the 20 s out.
"""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import apost, assert_retry_after, async_client, call_bytes, new_uid, open_session
from tests.faults.upstreams import build_slow_server, serve_mcp

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_CALLS = 200
SLEEP = 20
FAST_WITHIN = 2.0
QUEUE_SECONDS = 2  # MCPNEST_GATEWAY_QUEUE_SECONDS for this test: how long a call waits for a slot
WORKSPACE_CONCURRENCY = 64  # MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY (the default, said explicitly)
REFUSED_WITHIN = QUEUE_SECONDS + 6.0


def test_a_slow_upstream_in_one_workspace_does_not_starve_another(world, gateway_process, mcp_upstream):
    uid = new_uid()
    with serve_mcp(build_slow_server("slow")) as slow:
        people = world(servers=[("acme", "slow", slow.url), ("globex", "fast", mcp_upstream.url)])
        gateway = gateway_process(
            env={
                "MCPNEST_GATEWAY_QUEUE_SECONDS": str(QUEUE_SECONDS),
                "MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY": str(WORKSPACE_CONCURRENCY),
            }
        )
        carol = open_session(gateway.url, people.tokens["carol"])
        dave = open_session(gateway.url, people.tokens["dave"], slug="globex")
        slow_ids = [f"{uid}-slow-{n}" for n in range(SLOW_CALLS)]
        fast_id = f"{uid}-fast"

        async def scenario():
            finished: dict[str, tuple[float, object]] = {}
            started = time.monotonic()
            timeout = httpx2.Timeout(SLEEP + 10.0, connect=10.0)
            async with async_client(SLOW_CALLS, timeout) as slow_client, async_client(2) as fast_client:

                async def slow_call(call_id: str) -> None:
                    body = call_bytes(call_id, "sleep", {"seconds": SLEEP})
                    try:
                        reply = await apost(slow_client, gateway.url, body, carol)
                    except httpx2.HTTPError as exc:
                        reply = exc
                    finished[call_id] = (time.monotonic() - started, reply)

                tasks = [asyncio.create_task(slow_call(i)) for i in slow_ids]
                await asyncio.sleep(0.5)  # let them reach the gateway and take every slot
                fast_started = time.monotonic()
                fast = await asyncio.wait_for(
                    apost(fast_client, gateway.url, call_bytes(fast_id), dave, slug="globex"), 15
                )
                fast_elapsed = time.monotonic() - fast_started
                # Now give the refusals time to come back (done once they have, and gone quiet).
                deadline, last_count, quiet_since = started + REFUSED_WITHIN, -1, time.monotonic()
                while time.monotonic() < deadline and len(finished) < SLOW_CALLS:
                    if len(finished) != last_count:
                        last_count, quiet_since = len(finished), time.monotonic()
                    elif last_count >= SLOW_CALLS - WORKSPACE_CONCURRENCY and time.monotonic() - quiet_since > 0.7:
                        break
                    await asyncio.sleep(0.1)
                for task in tasks:  # the rest are sleeping upstream: hang up on them
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            return fast, fast_elapsed, finished

        fast, fast_elapsed, finished = asyncio.run(scenario())

    assert fast.status == 200 and fast.result is not None, f"globex's call: {fast.describe()}"
    assert fast_elapsed < FAST_WITHIN, f"globex's call took {fast_elapsed:.2f}s while acme's upstream was busy"

    refused, problems = [], []
    for call_id, (elapsed, reply) in finished.items():
        if isinstance(reply, Exception):
            problems.append(f"{call_id}: no complete answer after {elapsed:.1f}s ({type(reply).__name__}: {reply})")
        elif reply.error is None:
            problems.append(f"{call_id}: answered without sleeping {SLEEP}s: {reply.describe()}")
        elif reply.status not in (200, 503):
            problems.append(f"{call_id}: {reply.describe()}")
        else:
            if reply.status == 503:
                assert_retry_after(reply, where=call_id)
            refused.append(call_id)
    print("refusals:", {(finished[i][1].status, finished[i][1].error["code"]) for i in refused})
    print("first refusal:", finished[refused[0]][1].describe() if refused else None)
    assert not problems, "\n".join(problems[:10])
    assert len(refused) >= SLOW_CALLS - WORKSPACE_CONCURRENCY, (
        f"only {len(refused)} of {SLOW_CALLS} slow calls were refused as busy within {REFUSED_WITHIN}s "
        f"(at most {WORKSPACE_CONCURRENCY} may hold acme's slots)"
    )
    wait_for_rows(DjangoRows(), prefix=uid, expected=[fast_id, *refused], sent=[fast_id, *slow_ids])
    verify_audit("acme")
    verify_audit("globex")
