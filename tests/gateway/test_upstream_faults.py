"""Upstreams that answer outside the protocol: every call still gets an answer that names
the upstream and an audit row; listings leave the broken upstream out; answers over
MCPNEST_GATEWAY_MAX_RESPONSE_BYTES are refused (reading stops, the connection is closed);
tool errors (``isError``) are relayed as they are and recorded as 422.

The broken upstream is ``Garbage``: a raw HTTP/1.1 server that does the 2025 handshake and
lists its tool properly, then answers whatever each test scripts."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.gateway.services import server_add
from apps.gateway.snapshots import one_off_pool, workspace_config
from relay import catalog as catalogs
from tests.gateway.test_transport import ACCEPT, URL, rpc

pytestmark = pytest.mark.django_db(transaction=True)

Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]]
TOOL = {"name": "bad", "description": "Answers badly.", "inputSchema": {"type": "object"}}


def reply(id: Any, **member: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, **member}).encode()


def as_json(body: bytes) -> Answer:
    return 200, {"content-type": "application/json"}, body


def as_sse(*events: bytes) -> Answer:
    return 200, {"content-type": "text/event-stream"}, b"".join(b"event: message\ndata: %s\n\n" % e for e in events)


class Garbage:
    """A 2025-era upstream on 127.0.0.1 whose answers to ``tools/call`` (and any method in
    ``script``) are whatever the test says: a function of the request id returning
    (status, headers, body); a body that is an iterable is sent chunked, chunk by chunk."""

    def __init__(self) -> None:
        self.script: dict[str, Callable[[Any], Answer]] = {}
        self.hung_up = threading.Event()  # the gateway closed a connection in the middle of a body
        garbage = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                message = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                status, headers, body = garbage.answer(message.get("method"), message.get("id"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the gateway stopped reading and hung up
                    garbage.hung_up.set()
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mcp"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, id: Any) -> Answer:
        if method in self.script:
            return self.script[method](id)
        if method == "server/discover":
            return as_json(reply(id, error={"code": -32601, "message": "Method not found"}))
        if method == "initialize":
            result = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}, "prompts": {}},
                "serverInfo": {"name": "garbage", "version": "1"},
            }
            status, headers, body = as_json(reply(id, result=result))
            return status, {**headers, "mcp-session-id": "garbage-session"}, body
        if method == "tools/list":
            return as_json(reply(id, result={"tools": [TOOL]}))
        if method == "prompts/list":
            return as_json(reply(id, result={"prompts": [{"name": "ask"}]}))
        if method is None or method.startswith("notifications/"):
            return 202, {}, b""
        return as_json(reply(id, result={"content": [{"type": "text", "text": "fine"}], "isError": False}))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def garbage():
    server = Garbage()
    yield server
    server.stop()


@pytest.fixture
def bad(cast, garbage):
    """The garbage upstream in acme as "bad", added (and so approved, its tool pinned) by alice."""
    garbage.script.clear()
    garbage.hung_up.clear()
    return server_add(access=cast.access(cast.alice), slug="bad", url=garbage.url)


class Session:
    """A 2025-era client of the in-process gateway; every call must be answered within 15 s."""

    def __init__(self, client, url: str = URL) -> None:
        self.client = client
        self.url = url
        self.headers = dict(ACCEPT)
        self.ids = itertools.count(1)

    async def open(self) -> Session:
        response = await self.client.post(
            self.url,
            json=rpc(
                "initialize", protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
            ),
            headers=self.headers,
        )
        self.headers |= {"Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        return self

    async def call(self, method: str, **params) -> dict[str, Any]:
        async with asyncio.timeout(15):  # today's bug: the task dies and the answer never comes
            message = rpc(method, id=next(self.ids), **params)
            response = await self.client.post(self.url, json=message, headers=self.headers)
        busy = response.status_code == 503 and response.json().get("error", {}).get("code") == -32005
        # A call refused as busy is the one answer that comes with HTTP 503 (and Retry-After).
        assert response.status_code == 200 or (busy and response.headers["retry-after"]), response.text
        if response.headers["content-type"].startswith("text/event-stream"):
            events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
            return events[-1]
        return response.json()


@pytest.fixture
def session(asgi_client, issue, cast):
    """``await session()``: alice's session in acme; ``session(dave, workspace=globex)``."""

    async def make(user=None, *, workspace=None) -> Session:
        token = await sync_to_async(issue)(user or cast.alice, workspace=workspace)
        return await Session(asgi_client(token), f"/api/gw/{(workspace or cast.acme).slug}").open()

    return make


# --- malformed answers ------------------------------------------------------------------

MALFORMED = {
    "error code is a string": (
        lambda id: as_json(reply(id, error={"code": "abc", "message": "nope"})),
        "Upstream server bad sent a malformed error (code 'abc')",
    ),
    "error code is null": (
        lambda id: as_json(reply(id, error={"code": None, "message": "nope"})),
        "Upstream server bad sent a malformed error (code None)",
    ),
    "error without a code": (
        lambda id: as_json(reply(id, error={"message": "nope"})),
        "Upstream server bad sent a malformed error (no code)",
    ),
    "error message is not a string": (
        lambda id: as_json(reply(id, error={"code": -32602, "message": {"text": "nope"}})),
        "Upstream server bad sent a malformed error (code -32602 with an object as its message)",
    ),
    "error is a string": (
        lambda id: as_json(reply(id, error="it broke")),
        "Upstream server bad sent a malformed error (a string, not an error object)",
    ),
    "result is an array": (
        lambda id: as_json(reply(id, result=[1, 2])),
        "Upstream server bad sent a malformed result (an array, not an object)",
    ),
    "result _meta is a string": (
        lambda id: as_json(reply(id, result={"content": [], "_meta": "x"})),
        "Upstream server bad sent a malformed result (its _meta is not an object)",
    ),
    "neither result nor error": (
        lambda id: as_json(reply(id)),
        "Upstream server bad sent a reply without a result",
    ),
    "JSON content type, not JSON": (
        lambda id: as_json(b"<html>oops</html>"),
        "Upstream server bad sent a body that is not a JSON-RPC message",
    ),
    "JSON nested too deep to parse": (
        lambda id: as_json(b"[" * 100_000),
        "Upstream server bad sent a body that is not a JSON-RPC message",
    ),
    "SSE data is not JSON": (
        lambda id: as_sse(b"{not json"),
        "Upstream server bad sent an event that is not a JSON-RPC message (not a JSON object)",
    ),
    "SSE data is a number": (
        lambda id: as_sse(b"42"),
        "Upstream server bad sent an event that is not a JSON-RPC message (not a JSON object)",
    ),
    "SSE data is an array": (
        lambda id: as_sse(b'["id", "result"]'),
        "Upstream server bad sent an event that is not a JSON-RPC message (not a JSON object)",
    ),
    "SSE ends without the reply": (
        lambda id: as_sse(reply(id + 1000, result={})),  # someone else's reply, then the end
        "Upstream server bad ended its event stream without answering (HTTP 200)",
    ),
    "SSE reply carries a malformed error": (
        lambda id: as_sse(reply(id, error={"code": 1.5, "message": "half"})),
        "Upstream server bad sent a malformed error (code 1.5)",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_answer_is_an_error_that_names_the_upstream_and_is_recorded(
    case, bad, garbage, session, cast, rows
):
    answer, message = MALFORMED[case]
    garbage.script["tools/call"] = answer
    s = await session()
    response = await s.call("tools/call", name="bad", arguments={})
    assert response["error"]["code"] == -32000
    assert response["error"]["message"].startswith(message)
    (row,) = await sync_to_async(rows)(tool_name="bad")
    assert (row.server_slug, row.status, row.error_code) == ("bad", 502, -32000)
    # The upstream is not broken for good: the next well-formed answer goes through.
    del garbage.script["tools/call"]
    fine = await s.call("tools/call", name="bad", arguments={})
    assert fine["result"]["content"][0]["text"] == "fine"


@pytest.mark.parametrize(
    ("code", "relayed", "message"),
    [
        (2**31, -32000, "Upstream server bad answered error code 2147483648, beyond 32 bits: Too big"),
        (-(2**31) - 1, -32000, "Upstream server bad answered error code -2147483649, beyond 32 bits: Too big"),
        (2**31 - 1, 2**31 - 1, "Too big"),
        (-32602, -32602, "Too big"),
    ],
)
async def test_upstream_errors_are_relayed_and_codes_beyond_32_bits_become_32000(
    code, relayed, message, bad, garbage, session, rows
):
    garbage.script["tools/call"] = lambda id: as_json(reply(id, error={"code": code, "message": "Too big", "data": 7}))
    response = await (await session()).call("tools/call", name="bad", arguments={})
    assert response["error"] == {"code": relayed, "message": message, "data": 7}
    (row,) = await sync_to_async(rows)(tool_name="bad")
    assert (row.status, row.error_code) == (502, relayed)


async def test_completions_tolerate_the_same_garbage(bad, garbage, session):
    s = await session()

    def complete():
        return s.call(
            "completion/complete", ref={"type": "ref/prompt", "name": "ask"}, argument={"name": "q", "value": ""}
        )

    garbage.script["completion/complete"] = lambda id: as_json(reply(id, error={"code": "abc", "message": "x"}))
    broken = await complete()
    assert broken["error"]["code"] == -32000
    assert broken["error"]["message"].startswith("Upstream server bad sent a malformed error (code 'abc')")
    garbage.script["completion/complete"] = lambda id: as_sse(b"[]")
    assert (await complete())["error"]["code"] == -32000
    garbage.script["completion/complete"] = lambda id: as_json(reply(id, result={"completion": {"values": ["ab"]}}))
    assert (await complete())["result"]["completion"]["values"] == ["ab"]


LISTINGS = {
    "tools is a string": (lambda id: as_json(reply(id, result={"tools": "echo"})), "tools is a string"),
    "result is a number": (lambda id: as_json(reply(id, result=3)), "malformed result (a number"),
    "error is a string": (lambda id: as_json(reply(id, error="down")), "malformed error (a string"),
    "error code is a string": (lambda id: as_json(reply(id, error={"code": "x", "message": "m"})), "code 'x'"),
    "SSE data is an array": (lambda id: as_sse(b"[1]"), "not a JSON-RPC message"),
}


@pytest.mark.parametrize("case", LISTINGS)
async def test_a_garbage_listing_fails_that_upstream_alone(case, cast, fix_server, garbage, session):
    answer, detail = LISTINGS[case]
    garbage.script["tools/list"] = answer

    def add_and_load():
        server_add(access=cast.access(cast.alice), slug="bad", url=garbage.url, prefix="bad_")
        return workspace_config("acme")

    config = await sync_to_async(add_and_load)()
    async with one_off_pool() as pool:
        built = await catalogs.build(config, pool)
    assert detail in built.failures["bad"] and "upstream bad" in built.failures["bad"]
    tools = (await (await session()).call("tools/list"))["result"]["tools"]
    assert {"echo", "add"} <= {tool["name"] for tool in tools}
    assert not any(tool["name"].startswith("bad_") for tool in tools)


async def test_tools_with_names_of_the_wrong_type_are_left_out_of_the_list(cast, fix_server, garbage, session):
    garbage.script["tools/list"] = lambda id: as_json(
        reply(id, result={"tools": [{"name": ["echo"]}, {"name": 7}, "echo", TOOL]})
    )
    await sync_to_async(lambda: server_add(access=cast.access(cast.alice), slug="bad", url=garbage.url))()
    tools = (await (await session()).call("tools/list"))["result"]["tools"]
    assert sorted(tool["name"] for tool in tools) == ["add", "bad", "echo", "fail", "slow"]


async def test_an_unexpected_failure_is_answered_and_recorded(bad, session, monkeypatch, caplog, rows):
    """Whatever the cause (here a bug planted in the upstream layer), the caller gets an
    answer naming the upstream and the call a row; the log has the traceback."""

    async def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr("relay.upstream.Upstream.call", broken)
    response = await (await session()).call("tools/call", name="bad", arguments={})
    assert response["error"]["code"] == -32603
    assert "upstream server bad" in response["error"]["message"]
    (row,) = await sync_to_async(rows)(tool_name="bad")
    assert (row.status, row.error_code) == (502, -32603)
    assert "KeyError: 'planted'" in caplog.text


# --- the response size limit -------------------------------------------------------------

LIMIT = 64 * 1024
TOO_LARGE = "Upstream server bad answered more than 64 KB; the gateway's limit is MCPNEST_GATEWAY_MAX_RESPONSE_BYTES"


def endless_json(id: Any) -> Answer:
    head = b'{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"' % json.dumps(id).encode()
    return 200, {"content-type": "application/json"}, itertools.chain([head], itertools.repeat(b"a" * 8192))


def endless_sse(id: Any) -> Answer:
    note = json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}})
    event = b"event: message\ndata: " + note.encode() + b"\n\n"
    return 200, {"content-type": "text/event-stream"}, itertools.repeat(event * 100)


def one_huge_event(id: Any) -> Answer:
    text = "a" * (LIMIT + 1)
    return as_sse(reply(id, result={"content": [{"type": "text", "text": text}]}))


def declared_too_long(id: Any) -> Answer:
    return as_json(reply(id, result={"content": [{"type": "text", "text": "a" * LIMIT}]}))


@pytest.mark.parametrize(
    ("answer", "streamed"),
    [(endless_json, True), (endless_sse, True), (one_huge_event, False), (declared_too_long, False)],
    ids=["endless JSON body", "endless SSE notifications", "one SSE event over the limit", "Content-Length too big"],
)
async def test_answers_over_the_size_limit_are_refused_and_the_connection_closed(
    answer, streamed, bad, garbage, session, settings, rows
):
    settings.MCPNEST_GATEWAY_MAX_RESPONSE_BYTES = LIMIT
    garbage.script["tools/call"] = answer
    s = await session()
    response = await s.call("tools/call", name="bad", arguments={})
    assert response["error"] == {"code": -32000, "message": TOO_LARGE}
    if streamed:
        # Waited for off the event loop: the gateway's transport closes the socket on the loop's next turn.
        assert await asyncio.to_thread(garbage.hung_up.wait, 5), "the gateway kept reading"
    (row,) = await sync_to_async(rows)(tool_name="bad")
    assert (row.status, row.error_code) == (502, -32000)
    # Answers within the limit still go through, on a new connection.
    garbage.script["tools/call"] = lambda id: as_json(
        reply(id, result={"content": [{"type": "text", "text": "a" * (LIMIT // 2)}]})
    )
    fine = await s.call("tools/call", name="bad", arguments={})
    assert fine["result"]["content"][0]["text"] == "a" * (LIMIT // 2)


# --- tool errors ---------------------------------------------------------------------------


async def test_a_tool_error_is_relayed_unchanged_and_recorded_as_422(fix_server, session, rows):
    s = await session()
    failed = await s.call("tools/call", name="fail", arguments={})
    assert failed["result"]["isError"] is True
    assert failed["result"]["content"] == [{"type": "text", "text": "Error executing tool fail"}]
    worked = await s.call("tools/call", name="echo", arguments={"text": "hi"})
    assert worked["result"]["content"][0]["text"] == "hi"
    calls = await sync_to_async(rows)(server_slug="fix")
    assert [(row.tool_name, row.status, row.error_code) for row in calls] == [("fail", 422, None), ("echo", 200, None)]
