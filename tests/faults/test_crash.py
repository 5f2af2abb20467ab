"""kill -9 of a gateway under load loses no audit row of an answered call.

Eight clients call a gateway as fast as they can; after ~1.5 s the process is killed with
SIGKILL while they are still calling. Every call that got a complete answer before the kill
must end up with exactly one audit row (none twice), within ~10 s, whether the rows come
back through a restart on the same spool directory or through a sibling process, already
running on that directory, that adopts the dead process's spool. The chain verifies.
"""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import apost, async_client, call_bytes, new_uid, open_session, post
from tests.faults.procs import GatewayProcess

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 8
LOAD_SECONDS = 1.5  # at least this long under load before the kill …
MIN_ANSWERED = 40  # … and at least this many answers (a slow, shared CI machine needs longer)
MAX_LOAD_SECONDS = 15.0
ROWS_WITHIN = 10.0


def load_then_kill(gateway: GatewayProcess, headers: dict[str, str], uid: str) -> tuple[list[str], list[str]]:
    """Call ``gateway`` from CLIENTS concurrent clients, SIGKILL it mid-load; return
    (ids answered completely before the kill, every id sent)."""
    answered: list[str] = []
    sent: list[str] = []
    surprises: list[str] = []
    killed = False

    async def client_loop(n: int) -> None:
        async with async_client(1, httpx2.Timeout(10.0, connect=2.0)) as client:
            for i in range(100_000):
                call_id = f"{uid}-c{n}-{i}"
                sent.append(call_id)
                try:
                    reply = await apost(client, gateway.url, call_bytes(call_id), headers)
                except httpx2.HTTPError as exc:
                    if not killed:
                        surprises.append(f"{call_id} before the kill: {type(exc).__name__}: {exc}")
                    return
                if reply.result is None:
                    surprises.append(f"{call_id}: {reply.describe()}")
                answered.append(call_id)

    async def scenario() -> None:
        nonlocal killed
        tasks = [asyncio.create_task(client_loop(n)) for n in range(CLIENTS)]
        started = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(0.05)
            elapsed = asyncio.get_running_loop().time() - started
            if elapsed >= MAX_LOAD_SECONDS or (elapsed >= LOAD_SECONDS and len(answered) >= MIN_ANSWERED):
                break
        assert not any(task.done() for task in tasks), f"clients stopped before the kill: {surprises[:5]}"
        gateway.kill9()
        killed = True
        _, pending = await asyncio.wait(tasks, timeout=15)
        for task in pending:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception():
                raise task.exception()

    asyncio.run(scenario())
    assert not surprises, "\n".join(surprises[:10])
    assert len(answered) >= MIN_ANSWERED, f"only {len(answered)} calls answered in {MAX_LOAD_SECONDS}s of load"
    return answered, sent


def test_a_restart_on_the_same_spool_recovers_every_answered_call(world, gateway_process, mcp_upstream):
    uid = new_uid()
    people = world(servers=[("acme", "fix", mcp_upstream.url)])
    gateway = gateway_process()
    headers = open_session(gateway.url, people.tokens["carol"])

    answered, sent = load_then_kill(gateway, headers, uid)
    gateway.start()  # same port, same MCPNEST_SPOOL_DIR
    wait_for_rows(DjangoRows(), prefix=uid, expected=answered, sent=sent, timeout=ROWS_WITHIN)

    # The restarted process serves and records as usual.
    with httpx2.Client(timeout=20) as client:
        reply = post(client, gateway.url, call_bytes(f"{uid}-after"), headers)
    assert reply.status == 200 and reply.result is not None, reply.describe()
    wait_for_rows(DjangoRows(), prefix=uid, expected=[*answered, f"{uid}-after"], sent=[*sent, f"{uid}-after"])
    verify_audit("acme")


def test_a_running_sibling_adopts_the_spool_of_a_killed_process(world, gateway_process, mcp_upstream):
    uid = new_uid()
    people = world(servers=[("acme", "fix", mcp_upstream.url)])
    doomed, sibling = gateway_process.many(2)  # both on <tmp_path>/spool
    headers = open_session(doomed.url, people.tokens["carol"])
    with httpx2.Client(timeout=20) as client:  # the sibling is warm and has written rows of its own
        reply = post(client, sibling.url, call_bytes(f"{uid}-sibling"), headers)
    assert reply.status == 200 and reply.result is not None, reply.describe()

    answered, sent = load_then_kill(doomed, headers, uid)
    wait_for_rows(
        DjangoRows(),
        prefix=uid,
        expected=[f"{uid}-sibling", *answered],
        sent=[f"{uid}-sibling", *sent],
        timeout=ROWS_WITHIN,
        what="calls answered by the killed process (its running sibling should adopt its spool)",
    )
    assert sibling.alive(), sibling.log_tail()
    verify_audit("acme")
