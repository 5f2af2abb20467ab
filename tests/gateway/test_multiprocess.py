"""Several gateway processes behind one URL: sessions and revocations work on all of them,
with no sticky routing. Two real uvicorn processes share the test database (and Redis)."""

from __future__ import annotations

import os
import time

import httpx2
import pytest

from apps.tokens.models import GatewayToken
from apps.tokens.services import token_revoke
from tests.gateway.test_transport import ACCEPT, rpc

pytestmark = pytest.mark.django_db(transaction=True)

needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="processes share ended sessions and revocations through Redis (REDIS_URL)"
)


def _initialize(client: httpx2.Client, base: str) -> dict[str, str]:
    response = client.post(
        f"{base}/api/gw/acme",
        json=rpc("initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "lb-test"}),
        headers=ACCEPT,
    )
    assert response.status_code == 200, response.text
    return {**ACCEPT, "Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}


@pytest.fixture
def two_gateways(cast, fix_server, issue, gateway):
    token = issue(cast.carol)
    first, second = gateway(), gateway()
    with httpx2.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client, first, second


def test_a_session_opened_on_one_process_works_on_another(two_gateways):
    client, first, second = two_gateways
    headers = _initialize(client, first)
    answer = client.post(
        f"{second}/api/gw/acme", json=rpc("tools/call", id=2, name="add", arguments={"a": 1, "b": 2}), headers=headers
    )
    assert answer.status_code == 200 and answer.json()["result"]["content"][0]["text"] == "3"


@needs_redis
def test_ending_a_session_or_revoking_a_token_reaches_every_process(cast, two_gateways):
    client, first, second = two_gateways
    headers = _initialize(client, first)
    assert (
        client.delete(f"{first}/api/gw/acme", headers={"Mcp-Session-Id": headers["Mcp-Session-Id"]}).status_code == 204
    )
    assert client.post(f"{second}/api/gw/acme", json=rpc("ping"), headers=headers).status_code == 404

    headers = _initialize(client, second)
    assert client.post(f"{first}/api/gw/acme", json=rpc("ping"), headers=headers).status_code == 200
    token_revoke(access=cast.access(cast.carol), token=GatewayToken.objects.get(user=cast.carol))
    time.sleep(1.1)  # every process reads the revocation epoch at least once a second
    for base in (first, second):
        assert client.post(f"{base}/api/gw/acme", json=rpc("ping"), headers=headers).status_code == 401
