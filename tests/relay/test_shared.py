"""relay.shared: hits leased from Redis in batches, never more than the window has left;
ended sessions learnt from the stream within a second; unspent hits given back."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from relay import shared
from relay.shared import SharedState

pytestmark = pytest.mark.redis


@pytest.fixture
def url(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    return settings.REDIS_URL


def _key(name: str) -> str:
    return f"gw:rl:{name}-{time.time_ns()}"


async def test_a_burst_never_gets_more_than_the_limit_across_processes(url):
    first, second = SharedState(url), SharedState(url)
    key = _key("burst")
    hits = await asyncio.gather(
        *[(first if n % 2 else second).hit(key, limit=200, session_key=None) for n in range(300)]
    )
    assert sum(hit.allowed for hit in hits) == 200
    assert all(hit.retry_after >= 1 for hit in hits if not hit.allowed)
    await first.aclose()
    await second.aclose()


async def test_a_busy_key_leases_in_batches_and_gives_unspent_hits_back(url, monkeypatch):
    monkeypatch.setattr(shared, "LEASE_TTL", 0.2)
    state = SharedState(url)
    leases = 0
    lease = state._lease

    async def counted(key, held):
        nonlocal leases
        leases += 1
        await lease(key, held)

    monkeypatch.setattr(state, "_lease", counted)
    key = _key("busy")
    for n in range(2000):
        assert (await state.hit(key, limit=10**9, session_key=None)).allowed
        if n % 50 == 0:
            await asyncio.sleep(0)  # a server yields between requests: the next lease comes in the background
    assert leases < 100  # not a round trip per request
    await asyncio.sleep(0.3)
    await state.hit(_key("other"), limit=10, session_key=None)  # a reading gives back the expired lease
    await asyncio.sleep(0.1)
    client = redis.Redis.from_url(url)
    assert sum(int(client.get(k) or 0) for k in client.scan_iter(key + ":*")) == 2000
    client.close()
    await state.aclose()


async def test_a_session_ended_on_one_process_is_refused_by_another_within_a_second(url):
    first, second = SharedState(url), SharedState(url)
    session = f"gw:sess:end:test-{time.time_ns()}"
    assert not (await second.hit(_key("s"), limit=1000, session_key=session)).session_ended  # checked, cached
    await first.end_session(session)
    ended_at = time.monotonic()
    while not (await second.hit(_key("s"), limit=1000, session_key=session)).session_ended:
        assert time.monotonic() - ended_at < 1.0
        await asyncio.sleep(0.02)
    assert (await SharedState(url).hit(_key("s"), limit=1000, session_key=session)).session_ended  # a new process
    await first.aclose()
    await second.aclose()
