"""A graceful stop (SIGTERM, as a process manager restarts the server) with calls in flight.

uvicorn stops accepting, gives the calls in flight its graceful timeout (5 s, the README's
``--timeout-graceful-shutdown``), then cancels what is left. Every call must be on record
once the process has exited: those answered in time as answered, those cut off as
cancelled (499), none twice, and the chain verifies.
"""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import apost, async_client, call_bytes, new_uid, open_session
from tests.faults.upstreams import build_slow_server, serve_mcp

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = 6  # calls that finish within the graceful timeout
CUT = 6  # calls that outlast it (the upstream sleeps 30 s)


def test_a_graceful_stop_puts_every_call_in_flight_on_record(world, gateway_process):
    uid = new_uid()
    with serve_mcp(build_slow_server("slow")) as slow:
        people = world(servers=[("acme", "slow", slow.url)])
        gateway = gateway_process()
        headers = open_session(gateway.url, people.tokens["carol"])
        quick = [f"{uid}-quick-{n}" for n in range(QUICK)]
        cut = [f"{uid}-cut-{n}" for n in range(CUT)]
        replies: dict[str, object] = {}

        async def scenario() -> float:
            async with async_client(QUICK + CUT, httpx2.Timeout(40.0, connect=5.0)) as client:

                async def call(call_id: str, seconds: float) -> None:
                    try:
                        replies[call_id] = await apost(
                            client, gateway.url, call_bytes(call_id, "sleep", {"seconds": seconds}), headers
                        )
                    except httpx2.HTTPError as exc:
                        replies[call_id] = exc

                tasks = [asyncio.create_task(call(i, 1.0)) for i in quick]
                tasks += [asyncio.create_task(call(i, 30.0)) for i in cut]
                await asyncio.sleep(0.5)  # all of them reach the upstream
                stopping = time.monotonic()
                await asyncio.to_thread(gateway.terminate)  # SIGTERM, then wait for the exit
                await asyncio.wait(tasks, timeout=10)
                return time.monotonic() - stopping

        stopped_in = asyncio.run(scenario())
        assert stopped_in < 15, f"the server took {stopped_in:.1f} s to stop"
        answered = [i for i in quick if getattr(replies.get(i), "result", None) is not None]
        assert answered == quick, {i: replies.get(i) for i in quick}
        rows = wait_for_rows(DjangoRows(), prefix=uid, expected=quick + cut, timeout=5)
        assert {rows[i].status for i in quick} == {200}
        assert {rows[i].status for i in cut} == {499}, {i: rows[i] for i in cut}
    verify_audit("acme")
