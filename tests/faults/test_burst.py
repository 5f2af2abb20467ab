"""300 tools/call requests in flight at once on one gateway process (with Redis when the
machine has redis-server): no HTTP 500, every response a JSON-RPC answer that is 200, or
503/429 with Retry-After; every 200 has its audit row. With tight limits the overload
path (503 + Retry-After) must actually be taken."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx2
import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import assert_retry_after, new_uid, open_session, run_calls
from tests.faults.procs import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

IN_FLIGHT = 300
TIGHT = {
    "MCPNEST_GATEWAY_MAX_IN_FLIGHT": "50",
    "MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY": "4",
    "MCPNEST_GATEWAY_QUEUE_SECONDS": "1",
}


@pytest.mark.parametrize("limits", ["default", "tight"])
def test_a_burst_of_300_concurrent_calls(world, gateway_process, mcp_upstream, request, limits):
    redis_url = request.getfixturevalue("redis_server").url if RedisServer.binary() else None
    uid = new_uid()
    people = world(servers=[("acme", "fix", mcp_upstream.url)])
    gateway = gateway_process(redis_url=redis_url, env=TIGHT if limits == "tight" else None)
    headers = open_session(gateway.url, people.tokens["carol"])
    ids = [f"{uid}-{n}" for n in range(IN_FLIGHT)]

    # One connection per call, all started together: 300 calls in flight at once.
    timeout = httpx2.Timeout(60.0, connect=30.0)
    outcome = asyncio.run(run_calls(gateway.url, headers, ids, concurrency=IN_FLIGHT, timeout=timeout))
    assert not outcome.failures, f"calls without a complete answer: {list(outcome.failures.items())[:5]}"
    statuses = Counter(reply.status for reply in outcome.replies.values())
    for call_id, reply in outcome.replies.items():
        assert reply.status in (200, 429, 503), f"{call_id}: {reply.describe()}"
        if reply.status != 200:
            assert reply.error is not None, f"{call_id}: {reply.describe()}"
            assert_retry_after(reply, where=call_id)
    if limits == "tight":
        assert statuses[503] > 0, f"MCPNEST_GATEWAY_MAX_IN_FLIGHT=50 and 300 calls at once, yet no 503: {statuses}"
    answered = [i for i, reply in outcome.replies.items() if reply.status == 200]
    assert answered, f"nothing was served: {statuses}"
    wait_for_rows(DjangoRows(), prefix=uid, expected=answered, sent=ids)
    verify_audit("acme")
