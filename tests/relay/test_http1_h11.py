"""relay.http1's response parser against h11 on the same bytes.

Each case is a list of raw responses. A real local TCP server writes them, byte for byte
(split into the given TCP writes), to ``UpstreamTransport`` under ``httpx2.AsyncClient``; the
same bytes, in the same order and pieces, go to an ``h11.Connection(our_role=h11.CLIENT)``
after a matching request event. Both must agree on every response's status line, headers
and body, and on whether the connection can carry the next request; where h11 raises a
protocol error, the transport must raise an httpx2 error, never hand back a body. The few
places where the transport deliberately differs are listed: ``STRICTER`` (h11 reads them,
the transport refuses them) and ``LENIENT`` (the reverse, where RFC 9112 allows it).

h11 runs with ``max_incomplete_event_size=MAX_HEAD_BYTES``, the transport's own limit on a
response head (and on a chunk-size line and the trailers), so the size limits compare too.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import h11
import httpx2
import pytest

from relay.http1 import MAX_HEAD_BYTES, UpstreamTransport

H11_FEED = 8192  # h11 gets the bytes in pieces no larger than this, as a socket would hand them over
LIMITS = httpx2.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=60)


@dataclass
class Reply:
    """One raw response: written in ``writes`` (a pause between them makes each its own TCP
    read); with ``close`` the server hangs up after it. After the last reply it always does."""

    writes: list[bytes]
    close: bool = False


def reply(data: bytes, *, close: bool = False, split: int | None = None) -> Reply:
    writes = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    return Reply(writes, close)


@dataclass
class Case:
    replies: list[Reply]
    method: str = "POST"


def ok(body: bytes = b'{"ok":1}', *headers: bytes) -> bytes:
    extra = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def chunk(data: bytes, extension: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(data), extension, data)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + chunk(b"event: message\r\n\r\n", b";name=value")
    + b"00"
    + chunk(b'data: {"id": 1}\r\n\r\n', b';quoted="a;b" ')  # leading zeros, quoted ";"
    + chunk(b"abcdefghijklmnopqrstuvwxyz").upper()  # "1A": upper-case hex digits
    + b"0;last\r\nX-Checksum: abc\r\nExpires: never\r\n\r\n"
)
# Many short trailer lines, none too long alone, together past the limit.
TRAILER = b"x-t: %s\r\n" % (b"t" * 1000)
TRAILERS_PAST_THE_LIMIT = b"5\r\nhello\r\n0\r\n" + TRAILER * (2 * MAX_HEAD_BYTES // len(TRAILER)) + b"\r\n"


def chunked(*chunks: bytes, coding: bytes = b"chunked", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: %s\r\n%s\r\n" % (coding, extra) + b"".join(chunks)


HELLO = b"5\r\nhello\r\n0\r\n\r\n"
EMPTY = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


CASES: dict[str, Case] = {
    # --- framing ---------------------------------------------------------------------------
    "content-length": Case([reply(ok())]),
    "content-length-zero": Case([reply(ok(b""))]),
    "no-reason-phrase": Case([reply(b"HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nhi")]),
    "empty-reason-phrase": Case([reply(b"HTTP/1.1 404 \r\ncontent-length: 0\r\n\r\n")]),
    "chunked-extensions-and-trailers": Case([reply(CHUNKED)]),
    "chunked-in-one-byte-writes": Case([reply(CHUNKED, split=1)]),
    "chunked-in-small-writes-then-reused": Case([reply(CHUNKED, split=7), reply(ok(b'{"n":2}'))]),
    "content-length-in-small-writes": Case([reply(ok(b"x" * 300), split=5), reply(ok(b'{"n":2}'), split=3)]),
    "chunk-size-trailing-whitespace": Case([reply(chunked(b"5 \r\nhello\r\n0\r\n\r\n"))]),
    "chunk-extension-after-whitespace": Case([reply(chunked(b"5 ;x=1\r\nhello\r\n0\r\n\r\n"))]),
    "transfer-encoding-beats-content-length": Case([reply(chunked(HELLO, extra=b"content-length: 99\r\n"))]),
    "close-delimited-connection-close": Case(
        [reply(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"streamed until the end", close=True)]
    ),
    "close-delimited-no-framing-then-new-connection": Case(
        [reply(b"HTTP/1.1 200 OK\r\n\r\nuntil close", close=True), reply(ok())]
    ),
    "http-1.0-close-delimited": Case([reply(b"HTTP/1.0 200 OK\r\nserver: old\r\n\r\nold style", close=True)]),
    "interim-103-then-final": Case([reply(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + ok())]),
    # --- bodiless responses, and the connection after them ---------------------------------
    "204-then-next-response": Case([reply(b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"), reply(ok())]),
    "304-with-content-length-has-no-body": Case(
        [reply(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\n\r\n"), reply(ok())]
    ),
    "head-with-content-length-has-no-body": Case(
        [reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"), reply(EMPTY)],
        method="HEAD",
    ),
    # --- keep-alive --------------------------------------------------------------------------
    "keep-alive-three-responses": Case([reply(ok(b"1")), reply(CHUNKED), reply(ok(b"3"))]),
    "connection-close-then-new-connection": Case([reply(ok(b"1", b"connection: close"), close=True), reply(ok())]),
    "server-hangs-up-after-response": Case([reply(ok(b"1"), close=True), reply(ok(b"2"))]),
    "http-1.0-without-keep-alive-is-not-reused": Case(
        [reply(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n1"), reply(ok())]
    ),
    # --- early close -------------------------------------------------------------------------
    "no-response-at-all": Case([reply(b"", close=True)]),
    "close-mid-status-line": Case([reply(b"HTTP/1.1 20", close=True)]),
    "close-mid-headers": Case([reply(b"HTTP/1.1 200 OK\r\ncontent-le", close=True)]),
    "close-mid-content-length-body": Case([reply(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", close=True)]),
    "close-mid-chunk": Case([reply(chunked(b"a\r\nshort"), close=True)]),
    "close-before-chunk-crlf": Case([reply(chunked(b"5\r\nhello"), close=True)]),
    "close-before-last-chunk": Case([reply(chunked(b"5\r\nhello\r\n"), close=True)]),
    "close-mid-trailers": Case([reply(chunked(b"5\r\nhello\r\n0\r\nx-t: 1\r\n"), close=True)]),
    "second-response-cut-short": Case([reply(ok(b"1")), reply(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n12")]),
    # --- sizes ------------------------------------------------------------------------------------
    "header-of-60-KB-fits": Case([reply(ok(b"{}", b"x-big: " + b"a" * 60_000), split=16_384)]),
    "header-line-of-100-KB": Case([reply(ok(b"{}", b"x-big: " + b"a" * 100_000))]),
    "endless-headers": Case([reply(b"HTTP/1.1 200 OK\r\n" + b"x-more: 0123456789abcdef\r\n" * 40_000)]),
    "chunk-extension-of-100-KB": Case([reply(chunked(b"5;" + b"e" * 100_000 + b"\r\nhello\r\n0\r\n\r\n"))]),
    "trailers-over-the-limit": Case([reply(chunked(TRAILERS_PAST_THE_LIMIT))]),
    # --- malformed framing ---------------------------------------------------------------------
    "chunk-size-not-hex": Case([reply(chunked(b"zz\r\nhello\r\n0\r\n\r\n"))]),
    "chunk-size-negative": Case([reply(chunked(b"-5\r\nhello\r\n0\r\n\r\n"))]),
    "chunk-size-plus-sign": Case([reply(chunked(b"+5\r\nhello\r\n0\r\n\r\n"))]),
    "chunk-size-0x-prefix": Case([reply(chunked(b"0x5\r\nhello\r\n0\r\n\r\n"))]),
    "chunk-size-underscore": Case([reply(chunked(b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"))]),
    "chunk-size-leading-space": Case([reply(chunked(b" 5\r\nhello\r\n0\r\n\r\n"))]),
    "chunk-size-empty": Case([reply(chunked(b"\r\nhello\r\n0\r\n\r\n"))]),
    "chunk-size-21-digits": Case([reply(chunked(b"0" * 20 + HELLO))]),
    "chunk-data-longer-than-size": Case([reply(chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"))]),
    "content-length-conflicting": Case([reply(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab")]),
    "content-length-signed": Case([reply(b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab")]),
    "content-length-not-a-number": Case([reply(b"HTTP/1.1 200 OK\r\ncontent-length: two\r\n\r\nab")]),
    "content-length-21-digits": Case([reply(b"HTTP/1.1 200 OK\r\ncontent-length: " + b"0" * 20 + b"2\r\n\r\nab")]),
    "transfer-encoding-gzip-chunked": Case([reply(chunked(HELLO, coding=b"gzip, chunked"))]),
    "transfer-encoding-xchunked": Case([reply(chunked(HELLO, coding=b"xchunked"))]),
    "transfer-encoding-identity": Case([reply(chunked(b"ab", coding=b"identity"), close=True)]),
    "transfer-encoding-twice": Case([reply(chunked(HELLO, extra=b"transfer-encoding: chunked\r\n"))]),
    # --- status lines and header bytes -------------------------------------------------------------
    "status-line-not-http": Case([reply(b"SPDY/3 200 OK\r\n\r\n", close=True)]),
    "status-code-two-digits": Case([reply(b"HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n")]),
    "status-code-below-100": Case([reply(b"HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n")]),
    "status-line-no-space-before-reason": Case([reply(b"HTTP/1.1 200OK\r\ncontent-length: 0\r\n\r\n")]),
    "reason-with-nul": Case([reply(b"HTTP/1.1 200 O\x00K\r\ncontent-length: 0\r\n\r\n")]),
    "blank-line-before-status-line": Case([reply(b"\r\n" + ok())]),
    "header-whitespace-around-value": Case([reply(ok(b"{}", b"x-padded: \t value with  inner space \t"))]),
    "header-empty-value": Case([reply(ok(b"{}", b"x-empty:"))]),
    "header-obs-text-value": Case([reply(ok(b"{}", b"x-latin: caf\xe9"))]),
    "header-control-byte-value": Case([reply(ok(b"{}", b"x-ctl: a\x01b"))]),  # invalid, but h11 keeps it too
    "header-nul-in-value": Case([reply(ok(b"{}", b"x-nul: a\x00b"))]),
    "header-bare-cr-in-value": Case([reply(ok(b"{}", b"x-cr: a\rb"))]),
    "header-vertical-tab-in-value": Case([reply(ok(b"{}", b"x-vt: a\x0bb"))]),
    "header-space-before-colon": Case([reply(ok(b"{}", b"x-a : 1"))]),
    "header-space-in-name": Case([reply(ok(b"{}", b"x a: 1"))]),
    "header-separator-in-name": Case([reply(ok(b"{}", b"x(a): 1"))]),
    "header-non-ascii-name": Case([reply(ok(b"{}", b"x-\xe9: 1"))]),
    "header-without-colon": Case([reply(ok(b"{}", b"x-a 1"))]),
    "header-empty-name": Case([reply(ok(b"{}", b": 1"))]),
    "obs-fold-on-first-header": Case([reply(b"HTTP/1.1 200 OK\r\n folded: header\r\ncontent-length: 0\r\n\r\n")]),
    "trailer-malformed": Case([reply(chunked(b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"))]),
    # --- where the transport is stricter than h11 (see STRICTER) -----------------------------
    "obs-fold-continuation": Case([reply(ok(b"{}", b"x-folded: one", b" two"))]),
    "bare-lf-inside-head": Case([reply(b"HTTP/1.1 200 OK\ncontent-length: 2\r\n\r\nhi")]),
    "bare-lf-line-endings": Case([reply(b"HTTP/1.1 200 OK\ncontent-length: 2\n\nhi", close=True)]),
    "http-version-2.0-in-status-line": Case([reply(b"HTTP/2.0 200 OK\r\ncontent-length: 2\r\n\r\nhi")]),
}

# h11 accepts these; the transport refuses them (an httpx2.RemoteProtocolError), by choice.
STRICTER = {
    # RFC 9112 §5.2 lets a gateway refuse obs-fold (502) instead of unfolding it as h11 does.
    "obs-fold-continuation",
    # RFC 9112 §2.2: a recipient *may* take a lone LF as a line end; h11 does, we do not, so
    # a lone LF never hides a header inside the status line or a value.
    "bare-lf-inside-head",
    "bare-lf-line-endings",
    # Only HTTP/1.0 and HTTP/1.1 status lines; h11 takes any "HTTP/d.d".
    "http-version-2.0-in-status-line",
}


# h11 refuses these; the transport reads them, as RFC 9112 allows: the body it must give.
LENIENT = {
    # RFC 9112 §7.1.1: chunk-ext = *( BWS ";" ... ): whitespace may precede the ";".
    "chunk-extension-after-whitespace": b"hello",
}


# --- the two parsers --------------------------------------------------------------------------


Outcome = tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes]
ERROR = "error"


def request_event(method: str) -> list[h11.Request | h11.Data | h11.EndOfMessage]:
    headers = [("host", "127.0.0.1")]
    if method == "POST":
        return [h11.Request(method=method, target="/mcp", headers=[*headers, ("content-length", "2")]), h11.Data(b"{}")]
    return [h11.Request(method=method, target="/mcp", headers=headers)]


def with_h11(case: Case) -> tuple[list[Outcome | str], int]:
    """The responses as h11 reads them, and how many connections they need."""
    outcomes: list[Outcome | str] = []
    connections = 1
    conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    for index, one in enumerate(case.replies):
        if index:
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
            else:  # not reusable: a client opens a new connection
                conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
                connections += 1
        for event in [*request_event(case.method), h11.EndOfMessage()]:
            conn.send(event)
        pieces = [write[i : i + H11_FEED] for write in one.writes for i in range(0, len(write), H11_FEED)]
        if one.close or index == len(case.replies) - 1:
            pieces.append(b"")  # EOF
        response, body = None, b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if not pieces:
                        outcomes.append(ERROR)  # would wait for bytes that never come
                        return outcomes, connections
                    conn.receive_data(pieces.pop(0))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    outcomes.append(ERROR)
                    return outcomes, connections
                # h11.InformationalResponse: skipped, as the transport skips it
        except h11.RemoteProtocolError:
            outcomes.append(ERROR)
            return outcomes, connections
        assert response is not None
        headers = [(bytes(name), bytes(value)) for name, value in response.headers.raw_items()]
        version = b"HTTP/" + bytes(response.http_version)
        outcomes.append((response.status_code, bytes(response.reason), version, headers, body))
        # The transport reads the server's FIN before the next request (see with_relay).
        for piece in pieces:
            conn.receive_data(piece)
        if one.close and index < len(case.replies) - 1:
            assert isinstance(conn.next_event(), h11.ConnectionClosed)
    return outcomes, connections


class RawServer:
    """Answers the n-th request, on whichever connection it comes, with the n-th reply."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.connections = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mcp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")),
                    0,
                )
                await reader.readexactly(length)
                one = self.replies.pop(0)
                for index, piece in enumerate(one.writes):
                    if index:
                        await asyncio.sleep(0.002)  # its own TCP segment, its own read
                    writer.write(piece)
                    await writer.drain()
                if one.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up (after an error, or instead of reusing the connection)
        finally:
            writer.close()


async def with_relay(case: Case) -> tuple[list[Outcome | Exception], int]:
    """The responses as UpstreamTransport reads them, and how many connections it opened."""
    outcomes: list[Outcome | Exception] = []
    async with RawServer(case.replies) as server:
        transport = UpstreamTransport(limits=LIMITS, trust_env=False)
        async with httpx2.AsyncClient(transport=transport, timeout=3.0) as http:
            for index in range(len(case.replies)):
                if index:
                    await asyncio.sleep(0.02)  # lets the loop read a server's FIN
                try:
                    content = b"{}" if case.method == "POST" else None
                    async with http.stream(case.method, server.url, content=content) as response:
                        body = b"".join([part async for part in response.aiter_raw()])
                except httpx2.HTTPError as exc:
                    outcomes.append(exc)
                    break
                extensions = response.extensions
                outcomes.append(
                    (
                        response.status_code,
                        extensions["reason_phrase"],
                        extensions["http_version"],
                        list(response.headers.raw),
                        body,
                    )
                )
        return outcomes, server.connections


@pytest.mark.parametrize("name", list(CASES))
async def test_the_transport_reads_responses_as_h11_does(name):
    case = CASES[name]
    expected, h11_connections = with_h11(case)
    got, connections = await with_relay(case)

    if name in STRICTER:
        assert ERROR not in expected, "h11 accepts this case: it is listed as one we refuse"
        assert len(got) == len(expected)
        assert isinstance(got[-1], httpx2.RemoteProtocolError)
        assert got[:-1] == expected[:-1]
        return

    if name in LENIENT:
        assert expected == [ERROR], "h11 reads this case: it is listed as one only we read"
        assert len(got) == 1 and not isinstance(got[0], Exception) and got[0][4] == LENIENT[name]
        return

    if expected[-1] == ERROR:
        # Never a body where h11 sees a protocol error: the same responses before it, then an
        # httpx2 error in its place.
        assert len(got) == len(expected), f"h11: {expected}, transport: {got}"
        assert isinstance(got[-1], httpx2.RemoteProtocolError), got[-1]
        assert got[:-1] == expected[:-1]
    else:
        assert got == expected
    # Reused exactly when h11 says the connection may carry the next request.
    assert connections == h11_connections


async def test_a_connection_with_unsolicited_bytes_is_not_reused():
    """A server that sends more than the response (here, a whole second response) does not get
    to answer the next request from that stale buffer: the next request opens a connection.
    (h11 itself would refuse the extra bytes when asked for the next event.)"""
    smuggled = ok(b'{"first":1}') + ok(b'{"smuggled":1}')
    async with RawServer([Reply([smuggled]), Reply([ok(b'{"second":2}')])]) as server:
        transport = UpstreamTransport(limits=LIMITS, trust_env=False)
        async with httpx2.AsyncClient(transport=transport) as http:
            first = await http.post(server.url, content=b"{}")
            second = await http.post(server.url, content=b"{}")
    assert (first.json(), second.json()) == ({"first": 1}, {"second": 2})
    assert server.connections == 2


async def test_oversize_heads_fail_fast_without_buffering_them():
    """A head that never ends: refused as soon as it passes the limit, not at the read timeout."""
    endless = Reply([b"HTTP/1.1 200 OK\r\n" + b"x-more: 0123456789abcdef\r\n" * 100_000])
    async with RawServer([endless]) as server:
        transport = UpstreamTransport(limits=LIMITS, trust_env=False)
        async with httpx2.AsyncClient(transport=transport, timeout=30.0) as http:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpx2.RemoteProtocolError, match="too large"):
                await http.post(server.url, content=b"{}")
            assert loop.time() - started < 5.0
