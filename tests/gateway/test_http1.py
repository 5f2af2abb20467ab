"""The gateway's HTTP/1.1 transport to upstreams: framing, keep-alive and failures, against
a scripted asyncio server (each test says exactly which bytes the server sends)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.gateway.runtime.http1 import UpstreamTransport


def json_response(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(header + b"\r\n" for header in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        headers,
        body,
    )


class Scripted:
    """Answers the n-th request with the n-th canned response; ``None`` closes the connection
    without answering, a float waits that long first; ``close=True`` hangs up after each."""

    def __init__(self, *responses: bytes | float | None, close: bool = False) -> None:
        self.responses = list(responses)
        self.close = close
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/mcp"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                response = self.responses.pop(0)
                if isinstance(response, float):
                    await asyncio.sleep(response)
                    response = self.responses.pop(0)
                if response is None:
                    break
                writer.write(response)
                await writer.drain()
                if self.close:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


def client(max_connections: int = 10) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=10, keepalive_expiry=60)
    return httpx2.AsyncClient(transport=UpstreamTransport(limits=limits))


async def test_one_write_per_request_and_keep_alive_reuse():
    async with Scripted(json_response(b'{"a":1}'), json_response(b'{"b":2}')) as server, client() as http:
        first = await http.post(server.url, content=b'{"x":1}', headers={"mcp-method": "tools/call"})
        second = await http.post(server.url, content=b"{}")
    assert (first.status_code, first.json(), second.json()) == (200, {"a": 1}, {"b": 2})
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /mcp HTTP/1.1\r\n") and body == b'{"x":1}'
    assert b"\r\nmcp-method: tools/call" in head and b"\r\ncontent-length: 7" in head.lower()


async def test_chunked_body_streams_chunk_by_chunk_then_reuses_the_connection():
    parts = [b"event: message\r\n\r\n", b'data: {"id": 1}\r\n\r\n']
    chunked = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x;ext=1\r\n%s\r\n" % (len(parts[0]), parts[0])
        + b"%X\r\n%s\r\n" % (len(parts[1]), parts[1])
        + b"0\r\nx-trailer: ignored\r\n\r\n"
    )
    async with Scripted(chunked, json_response(b"{}")) as server, client() as http:
        async with http.stream("POST", server.url, content=b"{}") as response:
            received = [part async for part in response.aiter_raw()]
        again = await http.post(server.url, content=b"{}")
    assert received == parts
    assert again.json() == {} and server.connections == 1


async def test_body_without_length_ends_with_the_connection_and_is_not_reused():
    async with Scripted(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"c":3}', close=True) as server:
        server.responses.append(json_response(b"{}"))
        async with client() as http:
            first = await http.post(server.url, content=b"{}")
            second = await http.post(server.url, content=b"{}")
    assert first.json() == {"c": 3} and second.json() == {}
    assert server.connections == 2


async def test_connection_close_header_and_server_hangups_open_a_new_connection():
    async with Scripted(json_response(b"{}", b"connection: close"), json_response(b"{}"), close=True) as server:
        server.responses.append(json_response(b"{}"))
        async with client() as http:
            for _ in range(3):
                assert (await http.post(server.url, content=b"{}")).status_code == 200
                await asyncio.sleep(0.01)  # the loop reads the server's FIN before the next call
    assert server.connections == 3


async def test_interim_responses_are_skipped():
    interim = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"
    async with Scripted(interim + json_response(b'{"ok":1}')) as server, client() as http:
        assert (await http.post(server.url, content=b"{}")).json() == {"ok": 1}


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (None, httpx2.RemoteProtocolError),  # hung up without answering
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", httpx2.RemoteProtocolError),
        (b"SPDY/3 200 OK\r\n\r\n", httpx2.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n", httpx2.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", httpx2.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", httpx2.RemoteProtocolError),
    ],
)
async def test_broken_responses_raise_protocol_errors(response, error):
    async with Scripted(response, close=True) as server, client() as http:
        with pytest.raises(error):
            await http.post(server.url, content=b"{}")


async def test_timeouts_and_refused_connections():
    async with Scripted(0.5, json_response(b"{}")) as server, client() as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(server.url, content=b"{}", timeout=0.05)
    async with client() as http:
        with pytest.raises(httpx2.ConnectError):
            await http.post(server.url, content=b"{}")  # the server is gone


async def test_the_pool_limit_makes_callers_wait_then_time_out():
    async with Scripted(json_response(b"{}"), json_response(b"{}")) as server, client(max_connections=1) as http:
        async with http.stream("POST", server.url, content=b"{}"):
            with pytest.raises(httpx2.PoolTimeout):
                await http.post(server.url, content=b"{}", timeout=0.05)
        # The streamed response was closed unread: its slot is free again, on a new connection.
        assert (await http.post(server.url, content=b"{}")).status_code == 200
    assert server.connections == 2


async def test_real_mcp_upstream(upstream):
    """The fixture server (uvicorn and the mcp SDK, answering with an SSE stream)."""
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
    )
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with client() as http, http.stream("POST", upstream.url, content=body, headers=headers) as response:
        text = (await response.aread()).decode()
    assert response.status_code == 200 and response.headers["mcp-session-id"]
    assert '"serverInfo"' in text


async def test_https_with_a_verified_certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(json_response(b'{"tls":true}'))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    limits = httpx2.Limits(max_connections=2, max_keepalive_connections=2, keepalive_expiry=60)
    try:
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=limits, verify=trusting)) as http:
            assert (await http.post(url, content=b"{}")).json() == {"tls": True}
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=limits)) as http:
            with pytest.raises(httpx2.ConnectError):  # self-signed: not trusted by default
                await http.post(url, content=b"{}")
    finally:
        server.close()
