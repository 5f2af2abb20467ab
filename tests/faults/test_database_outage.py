"""PostgreSQL stops (immediate shutdown) under a running gateway, then comes back.

The gateway runs on a throwaway cluster (so this test can stop it). In the default mode,
``MCPNEST_GATEWAY_WHEN_DATABASE_DOWN=serve``, calls keep being answered from cached tokens
and configuration; their rows wait in the spool and reach the database, in call order, soon
after it is back; the chain verifies. In ``refuse`` mode, calls during the outage get HTTP
503 with a JSON-RPC error and a Retry-After header, and are served again once it is back.
"""

from __future__ import annotations

import itertools
import subprocess
import time

import httpx2
import pytest

from tests.faults.audit import PgRows, verify_audit_at, wait_for_rows
from tests.faults.gw import assert_retry_after, call_bytes, new_uid, open_session, post
from tests.faults.procs import PYTHON, REPO, base_env
from tests.faults.setup_data import MARKER, World

OUTAGE_CALLS = 50
ROWS_WITHIN = 10.0
NOTICED_WITHIN = 3.0  # refuse mode: how long the gateway may take to notice the outage


@pytest.fixture(scope="module")
def pg_world(pg_cluster, mcp_upstream) -> World:
    """The cast on the throwaway cluster, built by a subprocess with the real services."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [PYTHON, "-m", "tests.faults.setup_data", "--server", f"acme:fix:{mcp_upstream.url}"],
        cwd=REPO,
        env=base_env(DATABASE_URL=pg_cluster.database_url),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    assert result.returncode == 0 and lines, f"setup_data failed:\n{result.stdout}\n{result.stderr}"
    return World.from_json(lines[-1][len(MARKER) :])


def served(reply) -> bool:
    return reply.status == 200 and reply.result is not None


def test_calls_during_an_outage_are_served_and_recorded_in_order(pg_cluster, pg_world, gateway_process):
    uid = new_uid()
    rows = PgRows(pg_cluster.database_url)
    gateway = gateway_process(database_url=pg_cluster.database_url)
    headers = open_session(gateway.url, pg_world.tokens["carol"])
    ids = [f"{uid}-{n:03d}" for n in range(OUTAGE_CALLS)]
    with httpx2.Client(timeout=httpx2.Timeout(20.0, connect=5.0)) as client:
        warm = post(client, gateway.url, call_bytes(f"{uid}-warm"), headers)  # token and config now cached
        assert served(warm), warm.describe()
        wait_for_rows(rows, prefix=uid, expected=[f"{uid}-warm"])

        pg_cluster.stop()
        try:
            for call_id in ids:
                reply = post(client, gateway.url, call_bytes(call_id), headers, where=f"{call_id}, database down")
                assert served(reply), f"{call_id} with the database down (serve mode): {reply.describe()}"
        finally:
            pg_cluster.start()

    recorded = wait_for_rows(rows, prefix=uid, expected=[f"{uid}-warm", *ids], timeout=ROWS_WITHIN)
    seqs = [recorded[call_id].seq for call_id in ids]
    assert all(a < b for a, b in itertools.pairwise(seqs)), (
        f"rows of sequential calls are out of call order: seqs {seqs}"
    )
    assert recorded[f"{uid}-warm"].seq < seqs[0]
    verify_audit_at(pg_cluster.database_url, "acme")


def test_refuse_mode_answers_503_with_retry_after_during_an_outage(pg_cluster, pg_world, gateway_process):
    uid = new_uid()
    rows = PgRows(pg_cluster.database_url)
    gateway = gateway_process(
        database_url=pg_cluster.database_url, env={"MCPNEST_GATEWAY_WHEN_DATABASE_DOWN": "refuse"}
    )
    headers = open_session(gateway.url, pg_world.tokens["carol"])
    answered, sent = [], []
    counter = iter(range(100_000))

    def call(client):
        call_id = f"{uid}-{next(counter)}"
        sent.append(call_id)
        reply = post(client, gateway.url, call_bytes(call_id), headers, where=call_id)
        if reply.status == 200:
            answered.append(call_id)
        return reply

    with httpx2.Client(timeout=httpx2.Timeout(20.0, connect=5.0)) as client:
        assert served(call(client))
        pg_cluster.stop()
        try:
            # The gateway may take a moment to notice; what it still serves must be recorded later.
            stopped_at, first_refusal = time.monotonic(), None
            while time.monotonic() - stopped_at < NOTICED_WITHIN:
                reply = call(client)
                if reply.status == 503:
                    first_refusal = reply
                    break
                assert served(reply), f"before the gateway noticed the outage: {reply.describe()}"
                time.sleep(0.1)
            assert first_refusal is not None, f"no 503 within {NOTICED_WITHIN}s of the database going down"
            for reply in [first_refusal, *(call(client) for _ in range(5))]:
                assert reply.status == 503, f"refuse mode, database down: {reply.describe()}"
                assert reply.error is not None, f"a 503 without a JSON-RPC error: {reply.describe()}"
                assert_retry_after(reply, where="refuse mode")
        finally:
            pg_cluster.start()

        back_at, reply = time.monotonic(), None
        while time.monotonic() - back_at < ROWS_WITHIN:
            reply = call(client)
            if served(reply):
                break
            assert reply.status == 503, reply.describe()
            time.sleep(0.2)
        assert reply is not None and served(reply), f"not served {ROWS_WITHIN}s after the database came back"

    wait_for_rows(rows, prefix=uid, expected=answered, sent=sent, timeout=ROWS_WITHIN)
    verify_audit_at(pg_cluster.database_url, "acme")
