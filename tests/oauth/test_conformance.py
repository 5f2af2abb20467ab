"""The MCP conformance suite against the real server (uvicorn, its public URL its own address):

* the server scenarios of both suite versions, through the gateway, carried by an OAuth
  access token that the running server issued (registration, sign-in, consent and PKCE
  over HTTP) instead of an ``mng_`` token;
* the suite's authorization-server scenarios (0.2.0-alpha's ``conformance authorization``):
  the RFC 8414 metadata document, and the authorization code grant, whose browser step
  (sign in, Allow) Carol performs in headless Chromium.

The suite cannot send headers of its own, so the gateway runs are behind the loopback
proxy of tests/gateway/test_interop.py that adds ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading

import httpx2
import pytest

from apps.gateway.services import server_add
from apps.workspaces.services import workspace_set_rate_limit
from tests.browser import NEEDS_CHROMIUM
from tests.gateway.conformance_fixture import build_conformance_server
from tests.gateway.server import free_port
from tests.gateway.test_interop import CONFORMANCE_NEXT, NODE, _AuthProxy, _node_env, server_suite_failures, tool_calls
from tests.gateway.upstream import running
from tests.oauth.live import live_server, obtain_over_http, sign_in_and_allow

NEEDS_NODE = pytest.mark.skipif(
    not NODE.exists(),
    reason=f"the Node interop tools are not installed ({NODE} is missing): run `npm ci --prefix tests/interop`",
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The gateway's rate-limit counters live in Redis (with REDIS_URL) from test to test: start
    # from none, or the calls earlier tests made from 127.0.0.1 count against this one's.
    pytest.mark.usefixtures("relay_gateway"),
    NEEDS_NODE,
    pytest.mark.filterwarnings("ignore:The .* capability is deprecated as of 2026-07-28"),
]


@pytest.fixture(scope="module")
def conformance_upstream():
    """An upstream with the suite's fixture tools (as in tests/gateway/test_interop.py)."""
    with running(build_conformance_server()) as server:
        yield server


def test_server_conformance_through_the_gateway_with_an_oauth_token(cast, conformance_upstream, tmp_path):
    access = cast.access(cast.alice)
    server = server_add(access=access, slug="conformance", url=conformance_upstream.url)
    assert server.health_ok, server.health_detail
    workspace_set_rate_limit(access=access, per_minute=100_000)  # a suite run is a few hundred calls

    with live_server(tmp_path) as base:
        token, client_id = obtain_over_http(base, email=cast.carol.email, slug="acme")
        assert token.startswith("mna_")
        with _AuthProxy(base, token) as proxy:
            failures = server_suite_failures(f"{proxy.url}/api/gw/acme", tmp_path)
    assert not failures, "\n".join(failures)

    # Every call the suite made went on the audit trail as Carol's, through this OAuth client.
    rows = tool_calls(1, server_slug="conformance")
    assert {"test_simple_text", "test_tool_with_progress", "test_error_handling"} <= {r.tool_name for r in rows}
    assert {(r.member_id, r.oauth_client, r.token_prefix) for r in rows} == {(cast.carol.pk, client_id, "oauth")}


def _lines(process: subprocess.Popen) -> queue.Queue:
    """The process's output, line by line, read on a thread (so a wait can time out)."""
    lines: queue.Queue = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_authorization_server_conformance_with_a_person_in_chromium(cast, browser, tmp_path):
    callback_port = free_port()
    callback = f"http://127.0.0.1:{callback_port}/callback"
    results = tmp_path / "results"
    with live_server(tmp_path) as base:
        # The suite takes a registered client: registered as any MCP client does.
        registered = httpx2.post(
            f"{base}/oauth/register/",
            json={
                "client_name": "MCP conformance suite",
                "redirect_uris": [callback],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            },
            timeout=30,
        )
        assert registered.status_code == 201, (registered.status_code, registered.text[:300])
        client_id = registered.json()["client_id"]

        args = ["authorization", "--url", base, "--client-id", client_id, "--resource", f"{base}/api/gw/acme"]
        process = subprocess.Popen(  # noqa: S603 - our own arguments
            [str(NODE), str(CONFORMANCE_NEXT), *args, "--port", str(callback_port), "-o", str(results)],
            cwd=tmp_path,
            env=_node_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines, seen = _lines(process), []
            while True:  # the suite prints the authorization URL for a person to open
                line = lines.get(timeout=60)
                assert line is not None, "the suite ended before asking for a sign-in:\n" + "".join(seen)
                seen.append(line)
                if line.startswith(f"{base}/oauth/authorize/?"):
                    break
            sign_in_and_allow(browser(), line.strip(), email=cast.carol.email, callback=callback)
            process.wait(timeout=60)
            while (line := lines.get(timeout=10)) is not None:
                seen.append(line)
        finally:
            if process.poll() is None:
                process.kill()
    output = "".join(seen)
    assert process.returncode == 0, output[-4000:]

    checks = {}
    for path in results.rglob("checks.json"):
        for check in json.loads(path.read_text()):
            checks[check["id"]] = check["status"]
    assert checks == {
        "authorization-server-metadata": "SUCCESS",
        "authorization-server-metadata-cimd": "SUCCESS",
        "authorization-code-grant": "SUCCESS",
    }, output[-4000:]
