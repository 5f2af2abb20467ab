"""An upstream that answers tools/call with garbage: bad error codes, non-object results,
SSE that is not JSON or ends without a reply, JSON content types with other bodies, HTML,
20 MB. Each call gets a JSON-RPC error naming the upstream (never an HTTP 500, never the
upstream's body passed along), has exactly one audit row, and the gateway keeps serving.
"""

from __future__ import annotations

import httpx2
import pytest

from tests.faults.audit import DjangoRows, verify_audit, wait_for_rows
from tests.faults.gw import call_bytes, new_uid, open_session, post
from tests.faults.upstreams import GARBAGE_CASES, garbage_upstream

pytestmark = pytest.mark.django_db(transaction=True)

SLUG = "junk"


def test_every_kind_of_upstream_garbage_becomes_a_jsonrpc_error_naming_the_upstream(
    world, gateway_process, mcp_upstream
):
    uid = new_uid()
    problems: list[str] = []
    answered: list[str] = []
    with garbage_upstream() as junk:
        people = world(servers=[("acme", SLUG, junk.url), ("acme", "fix", mcp_upstream.url)])
        gateway = gateway_process()
        carol = open_session(gateway.url, people.tokens["carol"])
        with httpx2.Client(timeout=httpx2.Timeout(60.0, connect=5.0)) as client:
            for case, what in GARBAGE_CASES.items():
                call_id = f"{uid}-{case}"
                try:
                    reply = post(client, gateway.url, call_bytes(call_id, case), carol, where=f"{case} ({what})")
                except AssertionError as exc:  # a broken promise: 500, HTML, not JSON-RPC
                    problems.append(f"{case}: {exc}")
                    continue
                except httpx2.HTTPError as exc:
                    problems.append(f"{case} ({what}): no complete response ({type(exc).__name__}: {exc})")
                    continue
                answered.append(call_id)
                error = reply.error
                if error is None:
                    problems.append(f"{case} ({what}): not an error: {reply.describe()}")
                elif SLUG not in f"{error.get('message')} {error.get('data') or ''}":
                    problems.append(f"{case} ({what}): the error does not name upstream {SLUG!r}: {error!r}")
                elif reply.message.get("id") != call_id:
                    problems.append(f"{case}: answered with id {reply.message.get('id')!r}")
            # The gateway still serves afterwards (its upstream connections survived the garbage).
            after = f"{uid}-after"
            reply = post(client, gateway.url, call_bytes(after, "echo", {"text": "still here"}), carol)
        received = list(junk.calls)

    assert reply.status == 200 and reply.result is not None, f"a good call after the garbage: {reply.describe()}"
    assert sorted(set(received)) == sorted(GARBAGE_CASES), f"the upstream did not see every case: {received}"
    # Every answered call has its one row, and the chain verifies: reported with the rest.
    for check in (
        lambda: wait_for_rows(DjangoRows(), prefix=uid, expected=[*answered, after]),
        lambda: verify_audit("acme"),
    ):
        try:
            check()
        except AssertionError as exc:
            problems.append(f"audit: {exc}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
