"""An upstream's POSTs on the transport's fast path (``Upstream._open``: no httpx2 request or
response built per call) against a scripted server: the same bytes on the wire as httpx2's
path, the same answers, and httpx2's path where it still applies (compression); no cookies."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

import pytest
from mcp.shared.inbound import decode_header_value

from relay.config import Era, Settings, UpstreamConfig
from relay.http1 import Exchange
from relay.upstream import UpstreamError, UpstreamPool
from tests.relay.test_http1 import Scripted, json_response


def reply(message_id: int, result: dict | None = None) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": message_id, "result": result or {}}).encode()


def modern(pool: UpstreamPool, url: str):
    upstream = pool.get(UpstreamConfig(server_id=1, slug="up", url=url, headers=(("Authorization", "Bearer k"),)))
    upstream.era, upstream.ready, upstream.protocol_version = Era.MODERN, True, "2026-07-28"
    return upstream


def head_of(request: bytes) -> bytes:
    return request.partition(b"\r\n\r\n")[0]


async def test_the_fast_path_sends_what_httpx2_sends_and_reuses_the_connection():
    answers = [json_response(reply(1))] * 3
    async with Scripted(*answers) as server, UpstreamPool(Settings()) as pool:
        upstream = modern(pool, server.url + "?tenant=a")
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}
        body = json.dumps(message, separators=(",", ":")).encode()
        response = await upstream._open(body, upstream._call_headers("tools/call", {"name": "echo"}), 5.0)
        assert isinstance(response, Exchange)  # no cookie, no proxy, no compression: the fast path
        await response.aclose()  # unread: that connection is closed
        status, answer, fields = await upstream._post(message, timeout=5.0)
        assert (status, answer) == (200, {"jsonrpc": "2.0", "id": 1, "result": {}})
        assert (b"content-type", b"application/json") in fields
        httpx2_way = await upstream._send(
            "POST", upstream._url, content=body, headers=upstream._headers("tools/call", {"name": "echo"}), timeout=5.0
        )
        await httpx2_way.aclose()
    fast, _, via_httpx2 = server.requests
    assert fast == via_httpx2  # byte for byte: request line, headers in order, body
    assert head_of(fast).startswith(b"POST /mcp?tenant=a HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Bearer k\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call" in fast
    assert server.connections == 2  # the second call reused the connection the read answer left


@pytest.mark.parametrize(
    "name", ["echo\r\nX-Injected: 1", "echo\nx", "echo\x00", "café", " echo", "=?base64?ZWNobw==?="]
)
async def test_a_name_that_would_not_survive_as_a_header_goes_base64_wrapped(name):
    async with Scripted(json_response(reply(1))) as server, UpstreamPool(Settings()) as pool:
        upstream = modern(pool, server.url)
        assert (await upstream.request("tools/call", {"name": name}))["result"] == {}
    (sent,) = server.requests
    fields = head_of(sent).split(b"\r\n")[1:]
    (mcp_name,) = [value for field in fields if (value := field.partition(b": ")[2]) and field.startswith(b"mcp-name:")]
    assert mcp_name == b"=?base64?%s?=" % base64.b64encode(name.encode())
    assert decode_header_value(mcp_name.decode()) == name  # as the SDK's servers read it
    assert not any(field.lower().startswith(b"x-injected") for field in fields)


async def test_a_configured_header_value_that_would_break_the_head_is_refused_unsent():
    async with Scripted(json_response(reply(1))) as server, UpstreamPool(Settings()) as pool:
        upstream = pool.get(
            UpstreamConfig(server_id=2, slug="up", url=server.url, headers=(("X-Key", "k\r\nX-Injected: 1"),))
        )
        upstream.era, upstream.ready, upstream.protocol_version = Era.MODERN, True, "2026-07-28"
        with pytest.raises(UpstreamError, match="is unreachable \\(LocalProtocolError\\)"):
            await upstream.request("tools/call", {"name": "echo"})
    assert server.requests == []


async def test_an_event_stream_answer_with_a_charset_delivers_notifications_then_the_reply():
    events = (
        b": priming\r\n\r\n"
        + b'data: {"jsonrpc":"2.0","method":"notifications/message","params":{"data":"caf\xe9"}}\r\n\r\n'
        + b'data: {"jsonrpc":"2.0","id":1,"result":{"text":"d\xe9j\xe0"}}\r\n\r\n'
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(events[i : i + 7]), events[i : i + 7]) for i in range(0, len(events), 7))
    stream = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=ISO-8859-1\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    notified = []

    async def notify(message):
        notified.append(message)

    async with Scripted(stream, json_response(reply(2))) as server, UpstreamPool(Settings()) as pool:
        upstream = modern(pool, server.url)
        answer = await upstream.request("tools/call", {"name": "echo"}, notify=notify)
        assert answer["result"] == {"text": "déjà"}
        await asyncio.gather(*upstream._answering)  # the rest of the stream, read after the answer
        assert (await upstream.request("tools/call", {"name": "echo"}))["id"] == 2
    assert [message["params"]["data"] for message in notified] == ["café"]
    assert server.connections == 1  # the stream was read to its end in the background, then reused


async def test_compressed_answers_are_decoded_and_cookies_never_kept():
    compressed = gzip.compress(reply(1, {"big": "x" * 100}))
    gzipped = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(compressed), compressed)
    )
    with_cookie = json_response(reply(2), b"set-cookie: lb=node-7; Path=/")
    async with Scripted(gzipped, with_cookie, json_response(reply(3))) as server, UpstreamPool(Settings()) as pool:
        upstream = modern(pool, server.url)
        assert (await upstream.request("tools/call", {"name": "echo"}))["result"] == {"big": "x" * 100}
        await upstream.request("tools/call", {"name": "echo"})
        assert (await upstream.request("tools/call", {"name": "echo"}))["id"] == 3
    # The pool serves every tenant: a cookie one upstream sets must never ride on later calls.
    assert not any(b"\r\nCookie:" in request for request in server.requests)
    assert not pool.client.cookies.jar


async def test_an_answer_over_the_limit_is_refused_by_its_length():
    big = json_response(reply(1, {"text": "x" * 2000}))
    limited = Settings(max_response_bytes=1024)
    async with Scripted(big, json_response(reply(2))) as server, UpstreamPool(limited) as pool:
        upstream = modern(pool, server.url)
        with pytest.raises(UpstreamError, match="answered more than 1 KB"):
            await upstream.request("tools/call", {"name": "echo"})
        assert (await upstream.request("tools/call", {"name": "echo"}))["id"] == 2
    assert server.connections == 2  # the refused answer's connection was closed, not reused
