"""What the relay rewrites on the way between an upstream and a client, without the network."""

from __future__ import annotations

from relay.config import Settings, UpstreamConfig
from relay.upstream import MAX_RELAYED, UpstreamPool


def test_an_upstreams_cancellation_names_the_request_by_the_id_the_client_got():
    upstream = UpstreamPool(Settings()).get(UpstreamConfig(server_id=1, slug="s", url="http://127.0.0.1:9/mcp"))
    upstream.relayed_as(5, "mcpnest-relay:sealed")
    cancelled = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "x"}}
    assert upstream.outgoing(cancelled)["params"] == {"requestId": "mcpnest-relay:sealed", "reason": "x"}
    other = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 6}}
    assert upstream.outgoing(other) is other  # not one of the relayed requests: as it came
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 5}}
    assert upstream.outgoing(progress) is progress


def test_relayed_ids_are_remembered_within_a_bound():
    upstream = UpstreamPool(Settings()).get(UpstreamConfig(server_id=1, slug="s", url="http://127.0.0.1:9/mcp"))
    for n in range(MAX_RELAYED + 50):
        upstream.relayed_as(n, f"client-{n}")
    assert len(upstream._relayed) == MAX_RELAYED and 0 not in upstream._relayed
