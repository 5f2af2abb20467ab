"""The gateway under hostile input and failing services: bounded memory and bodies, opaque
session ids, a sliding-window rate limit, JSON-RPC answers when Redis or the database
fails, and revocations that reach every process through the database."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import httpx2
import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.test import override_settings

from apps.tokens.models import GatewayToken
from apps.tokens.services import token_revoke
from relay import shared as shared_state
from relay import snapshots as state
from relay.shared import SharedState, _sliding_window
from tests.gateway.test_transport import ACCEPT, URL, _initialize, rpc

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def carol_token(cast, issue):
    return issue(cast.carol)


# --- sessions --------------------------------------------------------------------------


async def test_session_ids_are_encrypted_and_bound_to_their_token(asgi_client, cast, issue, carol_token):
    async with asgi_client(carol_token) as client:
        session, _ = await _initialize(client)
    # Nothing readable inside: not the token's id, not the client's name.
    decoded = base64.urlsafe_b64decode(session + "=" * (-len(session) % 4))
    assert b"pytest" not in decoded and b'"t"' not in decoded and b"pytest" not in session.encode()
    headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    async with asgi_client(carol_token) as client:
        assert (await client.post(URL, json=rpc("ping"), headers=headers)).status_code == 200
        tampered = session[:-4] + ("AAAA" if not session.endswith("AAAA") else "BBBB")
        forged = await client.post(URL, json=rpc("ping"), headers={**headers, "Mcp-Session-Id": tampered})
        assert forged.status_code == 404
    bobs = await sync_to_async(issue)(cast.bob)
    async with asgi_client(bobs) as client:  # another member's session id is no use
        assert (await client.post(URL, json=rpc("ping"), headers=headers)).status_code == 404


# --- rate limit ---------------------------------------------------------------------------


def test_the_sliding_window_never_lets_twice_the_limit_through_at_a_boundary():
    # A fixed window allowed 60 at 0:59 and 60 more at 1:00. The sliding window counts the
    # previous minute's 60, weighted by how much of it still overlaps the last 60 seconds.
    current, allowed = 0, 0
    for _ in range(60):  # a burst in the first second of the new minute
        ok, _ = _sliding_window(previous=60, current=current, elapsed=1.0, limit=60)
        if ok:
            current, allowed = current + 1, allowed + 1
    assert allowed == 1
    assert _sliding_window(previous=60, current=1, elapsed=1.0, limit=60) == (False, 1)
    assert _sliding_window(previous=60, current=1, elapsed=31.0, limit=60)[0] is True  # half slid out
    assert _sliding_window(previous=0, current=59, elapsed=10, limit=60) == (True, 0)
    assert _sliding_window(previous=0, current=60, elapsed=10, limit=60) == (False, 50)


async def test_rate_limit_answers_429_with_an_honest_retry_after(asgi_client, cast, carol_token):
    await sync_to_async(type(cast.acme).objects.filter(pk=cast.acme.pk).update)(rate_limit_per_minute=3)
    async with asgi_client(carol_token) as client:
        await _initialize(client)  # loads the workspace: later requests count against its limit
        statuses = [(await client.post(URL, json=rpc("ping"), headers=ACCEPT)) for _ in range(4)]
    assert [r.status_code for r in statuses][-1] == 429
    limited = statuses[-1]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == -32005


def test_the_in_process_store_is_bounded(monkeypatch):
    monkeypatch.setattr(shared_state, "MEMORY_KEYS", 100)
    store = shared_state._Memory()
    for n in range(1000):
        store.hit(f"gw:rl:slug-{n}:1.2.3.4", 10, None)
    assert len(store._values) <= 100


@pytest.mark.redis
async def test_redis_rate_limit_uses_one_window_for_every_process(settings):
    first, second = (
        SharedState(settings.REDIS_URL),
        SharedState(settings.REDIS_URL),
    )  # two processes' views of the same Redis
    key = f"gw:rl:test-{time.time_ns()}"
    allowed = [(await store.hit(key, limit=5, session_key=None)).allowed for store in [first, second] * 4]
    assert allowed == [True] * 5 + [False] * 3


# --- Redis down -----------------------------------------------------------------------


async def test_redis_down_degrades_to_local_limits_never_a_500(asgi_client, carol_token, caplog, relay_gateway):
    # A Redis URL where nothing listens: the gateway keeps answering, counting locally.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        probe = SharedState("redis://127.0.0.1:1/0")
        started = time.monotonic()
        hits = [await probe.hit("gw:rl:x", limit=2, session_key=None) for _ in range(3)]
        assert [h.allowed for h in hits] == [True, True, False]
        assert time.monotonic() - started < 3  # one failed attempt, then memory until RETRY_AFTER_FAILURE
        relay_gateway.shared.redis_url = "redis://127.0.0.1:1/0"  # this gateway's Redis, down too
        relay_gateway.shared._failed_at = -1e9
        async with asgi_client(carol_token) as client:
            session, _ = await _initialize(client)
            headers = {**ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
            answers = [await client.post(URL, json=rpc("ping", id=n), headers=headers) for n in range(5)]
            ended = await client.delete(URL, headers={"Mcp-Session-Id": session})
            after = await client.post(URL, json=rpc("ping"), headers=headers)
    assert [a.status_code for a in answers] == [200] * 5
    assert all(a.headers["content-type"] == "application/json" for a in answers)
    assert ended.status_code == 204 and after.status_code == 404  # ended sessions are known locally
    assert "Redis is not answering" in caplog.text


# --- bodies and unknown slugs --------------------------------------------------------------


async def test_an_oversized_body_is_refused_before_it_is_read(asgi_client, carol_token, settings):
    settings.MCPNEST_GATEWAY_MAX_BODY_BYTES = 1000
    body = json.dumps(rpc("tools/call", name="echo", arguments={"text": "x" * 2000})).encode()
    async with asgi_client(carol_token) as client:
        declared = await client.post(URL, content=body, headers=ACCEPT)

        async def chunks():  # no Content-Length: counted while it arrives
            for start in range(0, len(body), 100):
                yield body[start : start + 100]

        streamed = await client.post(URL, content=chunks(), headers=ACCEPT)
        small = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "MCPNEST_GATEWAY_MAX_BODY_BYTES" in response.json()["error"]["message"]
    assert small.status_code != 413


async def test_unknown_slugs_are_cached_briefly_and_bounded(
    asgi_client, carol_token, monkeypatch, django_assert_max_num_queries, relay_gateway
):
    monkeypatch.setattr(relay_gateway.snapshots.workspaces, "limit", 50)
    async with asgi_client(carol_token) as client:
        for n in range(200):
            assert (await client.post(f"/api/gw/nope-{n}", json=rpc("ping"), headers=ACCEPT)).status_code == 404
        assert len(relay_gateway.snapshots.workspaces) <= 50
        # A slug already known to be missing costs no query until its answer expires.
        await client.post("/api/gw/nope-199", json=rpc("ping"), headers=ACCEPT)
        found, config = relay_gateway.snapshots.cached_workspace("nope-199")
        assert found and config is None
    monkeypatch.setattr(state, "NEGATIVE_TTL", 0)


async def test_unknown_slugs_are_rate_limited_per_client_before_any_lookup(asgi_client, settings):
    settings.MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT = 5
    async with asgi_client() as client:
        statuses = [
            (await client.post(f"/api/gw/random-{n}", json=rpc("ping"), headers=ACCEPT)).status_code for n in range(8)
        ]
    assert statuses == [404] * 5 + [429] * 3


async def test_at_capacity_the_gateway_answers_503_with_retry_after(asgi_client, carol_token, settings):
    settings.MCPNEST_GATEWAY_MAX_IN_FLIGHT = 0
    async with asgi_client(carol_token) as client:
        response = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["message"].startswith("The gateway is at capacity")


# --- the database down -----------------------------------------------------------------------


async def test_database_errors_are_json_503_never_html(asgi_client, carol_token, relay_gateway):
    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    snapshots = relay_gateway.snapshots
    snapshots.hooks = dataclasses.replace(snapshots.hooks, load_token=broken, read_changes=broken)
    async with asgi_client(carol_token) as client:
        response = await client.post(URL, json=rpc("ping"), headers=ACCEPT)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json()["error"]["message"] == "The gateway's database is not answering; retry shortly."


# --- revocation through the database ---------------------------------------------------------


def test_a_committed_revocation_reaches_a_gateway_process_within_a_second_without_redis(cast, issue, gateway):
    """Two processes, no Redis: the revocation is written by this one (an operator
    command or the portal) and the gateway process must refuse the token by itself."""
    from apps.gateway.services import server_add  # noqa: F401 - the fixture upstream is not needed

    raw = issue(cast.carol)
    base = gateway()
    with httpx2.Client(headers={**ACCEPT, "Authorization": f"Bearer {raw}"}, timeout=10) as client:
        first = client.post(f"{base}{URL}", json=rpc("initialize", protocolVersion="2025-11-25", capabilities={}))
        assert first.status_code == 200
        token_revoke(access=cast.access(cast.alice), token=GatewayToken.objects.get(user=cast.carol))
        revoked_at = time.monotonic()
        while True:
            status = client.post(
                f"{base}{URL}", json=rpc("initialize", protocolVersion="2025-11-25", capabilities={})
            ).status_code
            if status == 401:
                break
            assert time.monotonic() - revoked_at < 1.5, "the revoked token still works after 1.5 s"
            time.sleep(0.05)
    assert time.monotonic() - revoked_at <= 1.2


def test_deactivating_a_person_stops_their_tokens_on_a_running_gateway(cast, issue, gateway):
    raw = issue(cast.carol)
    base = gateway()
    with httpx2.Client(headers={**ACCEPT, "Authorization": f"Bearer {raw}"}, timeout=10) as client:
        hello = rpc("initialize", protocolVersion="2025-11-25", capabilities={})
        assert client.post(f"{base}{URL}", json=hello).status_code == 200
        cast.carol.is_active = False
        cast.carol.save()
        time.sleep(1.2)
        assert client.post(f"{base}{URL}", json=hello).status_code == 401


# --- last use ----------------------------------------------------------------------------------


async def test_any_authenticated_request_counts_as_use_at_most_one_write_a_minute(
    asgi_client, cast, carol_token, relay_gateway
):
    token = await sync_to_async(GatewayToken.objects.get)(user=cast.carol)
    assert token.last_used_at is None
    async with asgi_client(carol_token) as client:
        await _initialize(client)  # not a tool call
    relay_gateway.recorder.flush()
    await sync_to_async(token.refresh_from_db)()
    first = token.last_used_at
    assert first is not None
    async with asgi_client(carol_token) as client:
        await _initialize(client)
    relay_gateway.recorder.flush()
    await sync_to_async(token.refresh_from_db)()
    assert token.last_used_at == first  # within the minute: no second write
