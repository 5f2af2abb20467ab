"""Input without bounds does not grow the gateway's memory.

* 20,000 requests to random unknown workspace slugs (keep-alive, a few concurrent clients):
  each answered 404 with a JSON-RPC error, or 429 with Retry-After once the per-IP pre-auth
  limit trips (the default, 600 a minute: every unknown slug costs a database lookup, and
  20,000 lookups on a fresh connection each, as the test settings make them, would not fit
  a CI budget); the gateway process's RSS grows by < 30 MB.
* Eight 100 MB bodies (Content-Length) and one chunked upload without a length streaming up
  to 100 MB: each answered 413 with a JSON-RPC error; RSS grows by < 50 MB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx2
import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import (
    RawClient,
    assert_retry_after,
    auth,
    call_bytes,
    check_reply,
    new_uid,
    open_session,
    post,
    rpc_bytes,
    upload,
)

pytestmark = pytest.mark.django_db(transaction=True)
WATCHDOG_SECONDS = 300  # hang protection; the flood takes ~1 min on a busy 2-core machine

UNKNOWN_SLUG_REQUESTS = 20_000
PREAUTH_LIMIT = 600  # MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT (the default, said explicitly)
CLIENTS = 8
SLUG_RSS_GROWTH = 30 * 1024 * 1024
BIG_BODY = 100 * 1024 * 1024
BIG_BODIES = 8
BODY_RSS_GROWTH = 50 * 1024 * 1024
MB = 1024 * 1024


async def _unknown_slugs(port: int, count: int, *, headers: dict[str, str]) -> Counter:
    statuses: Counter = Counter()
    body = rpc_bytes("ping", 1)
    remaining = iter(range(count))

    async def worker() -> None:
        async with RawClient(port) as client:  # keep-alive
            for _ in remaining:
                reply = await client.post(f"/api/gw/nope-{uuid.uuid4().hex}", body, headers)
                statuses[reply.status] += 1
                if reply.status == 429:
                    assert_retry_after(reply)
                else:
                    assert reply.status == 404 and reply.error is not None, reply.describe()

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return statuses


def test_requests_to_random_unknown_slugs_do_not_grow_memory(world, gateway_process):
    people = world()
    gateway = gateway_process(env={"MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT": str(PREAUTH_LIMIT)})
    headers = auth(people.tokens["carol"])
    asyncio.run(_unknown_slugs(gateway.port, 100, headers=headers))  # warm up: imports, pools, caches
    before = gateway.rss()
    statuses = asyncio.run(_unknown_slugs(gateway.port, UNKNOWN_SLUG_REQUESTS, headers=headers))
    grown = gateway.rss() - before
    assert sum(statuses.values()) == UNKNOWN_SLUG_REQUESTS and set(statuses) <= {404, 429}, statuses
    assert statuses[404] >= PREAUTH_LIMIT // 2, f"unknown slugs were hardly looked up: {statuses}"
    assert statuses[429] > 0, f"{UNKNOWN_SLUG_REQUESTS} requests, pre-auth limit {PREAUTH_LIMIT}: {statuses}"
    assert grown < SLUG_RSS_GROWTH, f"RSS grew {grown / MB:.1f} MB over {UNKNOWN_SLUG_REQUESTS} unknown slugs"


def test_huge_bodies_are_refused_with_413_without_growing_memory(world, gateway_process, mcp_upstream):
    uid = new_uid()
    people = world(servers=[("acme", "fix", mcp_upstream.url)])
    gateway = gateway_process()
    headers = open_session(gateway.url, people.tokens["carol"])
    warm = [f"{uid}-warm-{n}" for n in range(5)]
    with httpx2.Client(timeout=20) as client:  # warm up the call path first
        for call_id in warm:
            assert post(client, gateway.url, call_bytes(call_id), headers).status == 200
    before = gateway.rss()
    peak, problems, trace = before, [], []
    plan = [("Content-Length", False)] * BIG_BODIES + [("chunked", True)]
    for n, (kind, chunked) in enumerate(plan):
        sent = upload(gateway.port, "/api/gw/acme", headers, total=BIG_BODY, chunked=chunked)
        rss = gateway.rss()
        peak = max(peak, rss)
        where = f"upload {n + 1} ({kind})"
        grew = (rss - before) / MB
        trace.append(f"{where}: HTTP {sent.status} after {sent.sent / MB:.0f} MB sent, RSS +{grew:.0f} MB")
        try:
            reply = check_reply(sent.status, sent.headers, sent.content, where=where)
            assert reply.status == 413 and reply.error is not None, f"{where}: {reply.describe()}"
        except AssertionError as exc:
            problems.append(str(exc))
    grown = peak - before
    wait_for_rows(DjangoRows(), prefix=uid, expected=warm)
    verify_audit("acme")
    assert not problems, "\n".join(problems + trace)
    assert grown < BODY_RSS_GROWTH, f"RSS grew {grown / MB:.1f} MB over {len(plan)} uploads of 100 MB:\n" + "\n".join(
        trace
    )
