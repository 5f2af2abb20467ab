"""Poison input does not poison the audit trail.

carol makes many good calls while bob sends tools/call requests whose id holds a NUL or a
lone surrogate (which PostgreSQL text and UTF-8 cannot store) or whose tool name holds a
NUL. Every request is answered; the bad name is refused (-32602) before any upstream call;
every call has its one audit row — the good ones included, which would be lost if a batch
of rows failed as a whole — and the chain verifies.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import apost, async_client, call_bytes, new_uid, open_session, run_calls
from tests.faults.procs import wait_until
from tests.faults.upstreams import serve_mcp

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_CALLS = 1000  # the brief says 2,000, or 500 if time requires: 1,000 keeps the suite near 4 min
ROUNDS = 3  # each poison is sent this many times, spread over the good calls


def test_poison_ids_and_names_are_answered_and_recorded_without_losing_good_rows(world, gateway_process):
    uid = new_uid()
    with serve_mcp(record=True) as upstream:
        people = world(servers=[("acme", "fix", upstream.url)])
        gateway = gateway_process()
        carol = open_session(gateway.url, people.tokens["carol"])
        bob = open_session(gateway.url, people.tokens["bob"])

        good_ids = [f"{uid}-good-{n}" for n in range(GOOD_CALLS)]
        poison = []  # (id, tool name, prefix its audit row's request_id must keep)
        for round_ in range(ROUNDS):
            poison.append((f"{uid}-p{round_}a-x\u0000", "echo", f"{uid}-p{round_}a-x"))
            poison.append((f"{uid}-p{round_}b-\ud800", "echo", f"{uid}-p{round_}b-"))
            poison.append((f"{uid}-p{round_}c-name", "echo\u0000", f"{uid}-p{round_}c-name"))

        async def send_poison() -> dict:
            replies = {}
            async with async_client(2) as client:
                for call_id, name, _ in poison:
                    await asyncio.sleep(0.15)  # land among the good calls' rows
                    replies[call_id] = await apost(client, gateway.url, call_bytes(call_id, name), bob)
            return replies

        async def scenario():
            poisoned = asyncio.create_task(send_poison())
            good = await run_calls(gateway.url, carol, good_ids, concurrency=6)
            return good, await asyncio.wait_for(poisoned, 60)

        good, poisoned = asyncio.run(scenario())
        forwarded_names = [name for method, name in upstream.seen if method == "tools/call"]

    assert not good.failures, f"good calls without an answer: {list(good.failures.items())[:5]}"
    for call_id in good_ids:
        reply = good.replies[call_id]
        assert reply.status == 200 and reply.result is not None, f"good call {call_id}: {reply.describe()}"
        assert reply.message["id"] == call_id

    for call_id, name, _ in poison:
        reply = poisoned[call_id]
        assert reply.message is not None, f"poison {call_id!r} got no JSON-RPC answer: {reply.describe()}"
        assert reply.message["id"] == call_id, f"poison {call_id!r} answered with another id: {reply.describe()}"
        if "\u0000" in name:
            assert reply.error is not None, f"tool name {name!r} was not refused: {reply.describe()}"
            assert reply.error["code"] == -32602, f"tool name {name!r}: {reply.describe()}"
            assert "invalid" in reply.error["message"].lower(), (
                f"the refusal of tool name {name!r} should say the name is invalid: {reply.error['message']!r}"
            )
    assert not [n for n in forwarded_names if "\u0000" in str(n)], "a tool name with a NUL reached the upstream"

    # Every good call has exactly its one row: no batch was lost to a poisoned row.
    wait_for_rows(DjangoRows(), prefix=f"{uid}-good-", expected=good_ids, what="good calls")

    # And every poison call has one row too, under bob's token, its id made storable.
    rows = DjangoRows()
    wait_until(lambda: len(rows.rows(uid, token_prefix=people.prefixes["bob"])) >= len(poison), timeout=10)
    bob_rows = rows.rows(uid, token_prefix=people.prefixes["bob"])
    assert len(bob_rows) == len(poison), (
        f"{len(poison)} poison calls answered, {len(bob_rows)} audit rows: {[r.request_id for r in bob_rows]!r}"
    )
    for call_id, _, kept_prefix in poison:
        matching = [r for r in bob_rows if r.request_id.startswith(kept_prefix)]
        assert len(matching) == 1, f"poison call {call_id!r}: rows {[r.request_id for r in matching]!r}"

    verify_audit("acme")
