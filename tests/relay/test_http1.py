"""The gateway's HTTP/1.1 transport to upstreams: framing, keep-alive and failures, against
a scripted asyncio server (each test says exactly which bytes the server sends); and the
environment's proxies, through a real forward proxy. (Its parser against h11: test_http1_h11.)"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.http1 import UpstreamTransport
from tests.gateway.upstream import build_server, running


@pytest.fixture(scope="module")
def upstream():
    with running(build_server("fixture")) as server:
        yield server


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


def tls_contexts(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client context
    that trusts it."""
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
    return server_context, ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))


async def test_https_with_a_verified_certificate(tmp_path):
    server_context, trusting = tls_contexts(tmp_path)

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


# --- proxies from the environment ---------------------------------------------------------


class LocalServer:
    """A TCP server on 127.0.0.1 for the length of an ``async with``; ``_serve`` answers."""

    ssl_context: ssl.SSLContext | None = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class Upstream(LocalServer):
    """A plain HTTP/1.1 server (optionally TLS) answering every request with JSON naming it."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Upstream:
        await super().__aenter__()
        self.url = f"{'https' if self.ssl_context else 'http'}://{self.address}/mcp"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(content_length(head))
                self.requests.append(head)
                body = json.dumps({"n": len(self.requests), "line": head.split(b"\r\n")[0].decode()}).encode()
                writer.write(json_response(body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def content_length(head: bytes) -> int:
    lines = head.lower().split(b"\r\n")
    return next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class ForwardProxy(LocalServer):
    """A forward proxy: absolute-form requests (``POST http://host:port/path HTTP/1.1``) are
    forwarded, each over a new upstream connection, and the answer relayed on a kept-alive
    client connection; ``CONNECT host:port`` opens a tunnel. It records what it forwards."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.tunnels: list[str] = []

    async def __aenter__(self) -> ForwardProxy:
        await super().__aenter__()
        self.url = f"http://{self.address}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head[:-4].split(b"\r\n")
                method, target, _ = request_line.decode().split(" ")
                if method == "CONNECT":
                    self.tunnels.append(target)
                    host, port = target.rsplit(":", 1)
                    upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
                    return
                body = await reader.readexactly(content_length(head))
                url = httpx2.URL(target)  # absolute-form, as a client speaks to a proxy
                self.requests.append((method, target))
                upstream_reader, upstream_writer = await asyncio.open_connection(url.host, url.port)
                kept = [line for line in lines if not line.lower().startswith((b"connection:", b"proxy-"))]
                upstream_writer.write(
                    b"%s %s HTTP/1.1\r\n" % (method.encode(), url.raw_path)
                    + b"".join(line + b"\r\n" for line in [*kept, b"connection: close"])
                    + b"\r\n"
                    + body
                )
                upstream_head = await upstream_reader.readuntil(b"\r\n\r\n")
                upstream_body = await upstream_reader.readexactly(content_length(upstream_head))
                upstream_writer.close()
                writer.write(upstream_head + upstream_body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture
def environment(monkeypatch):
    """Sets proxy variables, after clearing any (either case) the process had."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def set_variables(variables: dict[str, str]) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_variables


PROXY = "{proxy}"


def variables_id(variables: dict[str, str]) -> str:
    return ",".join(name if value == PROXY else f"{name}={value}" for name, value in variables.items()) or "none"


@pytest.mark.parametrize(
    ("variables", "proxied"),
    [
        ({}, False),
        ({"HTTP_PROXY": PROXY}, True),
        ({"http_proxy": PROXY}, True),
        ({"HTTP_PROXY": "{address}"}, True),  # no scheme: http:// is assumed
        ({"ALL_PROXY": PROXY}, True),
        ({"all_proxy": PROXY}, True),
        ({"HTTPS_PROXY": PROXY}, False),  # for https:// URLs only
        ({"HTTP_PROXY": PROXY, "NO_PROXY": "127.0.0.1"}, False),
        ({"HTTP_PROXY": PROXY, "no_proxy": "example.com, 127.0.0.0/8"}, False),
        ({"ALL_PROXY": PROXY, "NO_PROXY": "*"}, False),
        ({"HTTP_PROXY": PROXY, "NO_PROXY": "example.com,10.0.0.0/8"}, True),
    ],
    ids=lambda value: ("proxied" if value else "direct") if isinstance(value, bool) else variables_id(value),
)
async def test_the_environment_s_proxy_carries_the_requests_it_covers(environment, variables, proxied):
    async with ForwardProxy() as proxy, Upstream() as upstream:
        environment({name: value.format(proxy=proxy.url, address=proxy.address) for name, value in variables.items()})
        async with client() as http:  # built after the environment is set: it is read then
            answers = [(await http.post(upstream.url, content=b'{"x":1}')).json() for _ in range(2)]
    assert [answer["n"] for answer in answers] == [1, 2]
    assert all(answer["line"] == "POST /mcp HTTP/1.1" for answer in answers)
    assert proxy.requests == ([("POST", upstream.url)] * 2 if proxied else [])


async def test_trust_env_false_ignores_the_environment(environment):
    async with ForwardProxy() as proxy, Upstream() as upstream:
        environment({"HTTP_PROXY": proxy.url})
        limits = httpx2.Limits(max_connections=2, max_keepalive_connections=2, keepalive_expiry=60)
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=limits, trust_env=False)) as http:
            assert (await http.post(upstream.url, content=b"{}")).status_code == 200
    assert proxy.requests == [] and len(upstream.requests) == 1


async def test_https_goes_through_a_connect_tunnel_with_the_transport_s_verification(environment, tmp_path):
    server_context, trusting = tls_contexts(tmp_path)
    async with ForwardProxy() as proxy, Upstream(server_context) as upstream:
        environment({"HTTPS_PROXY": proxy.url})
        limits = httpx2.Limits(max_connections=2, max_keepalive_connections=2, keepalive_expiry=60)
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=limits, verify=trusting)) as http:
            assert (await http.post(upstream.url, content=b"{}")).json()["n"] == 1
        async with httpx2.AsyncClient(transport=UpstreamTransport(limits=limits)) as http:
            with pytest.raises(httpx2.ConnectError):  # self-signed: not trusted by default, proxied or not
                await http.post(upstream.url, content=b"{}")
    assert proxy.tunnels == [f"127.0.0.1:{upstream.port}"] * 2 and proxy.requests == []


async def test_proxied_requests_count_against_the_in_flight_limit(environment):
    async with ForwardProxy() as proxy, Upstream() as upstream:
        environment({"HTTP_PROXY": proxy.url})
        async with client(max_connections=1) as http:
            async with http.stream("POST", upstream.url, content=b"{}"):
                with pytest.raises(httpx2.PoolTimeout):
                    await http.post(upstream.url, content=b"{}", timeout=0.05)
            # The streamed response is closed: its slot is free again.
            assert (await http.post(upstream.url, content=b"{}")).status_code == 200
    assert len(proxy.requests) == 2
