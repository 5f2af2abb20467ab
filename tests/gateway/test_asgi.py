"""The gateway's lean ASGI handler: what it skips, and that it still behaves like Django's."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_finished, request_started
from twisted.web import http as twisted_http

from apps.audit.models import ToolCall
from tests.gateway.test_governance import Session

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def signals_sent():
    sent: list[str] = []

    def started(**kwargs):
        sent.append("started")

    def finished(**kwargs):
        sent.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    yield sent
    request_started.disconnect(started)
    request_finished.disconnect(finished)


async def test_gateway_requests_skip_the_request_signals_portal_requests_do_not(cast, asgi_client, signals_sent):
    async with asgi_client() as client:
        response = await client.post("/api/gw/acme", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=ACCEPT)
        assert response.status_code == 401  # answered by the gateway view, without Django's signals
        assert signals_sent == []
        await client.get("/accounts/login/")
    assert signals_sent == ["started", "finished"]


async def test_a_refused_token_is_logged_without_any_of_it(cast, asgi_client, caplog):
    # The server writes no access log (README): a refused token gets a line of its own.
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    secret = "mng_" + "x" * 40
    with caplog.at_level("WARNING", logger="apps.gateway.views"):
        async with asgi_client(secret) as client:
            assert (await client.post("/api/gw/acme", json=ping, headers=ACCEPT)).status_code == 401
        async with asgi_client() as client:  # no token at all: nothing to log
            assert (await client.post("/api/gw/acme", json=ping, headers=ACCEPT)).status_code == 401
    lines = [record.getMessage() for record in caplog.records if record.name == "apps.gateway.views"]
    assert lines == [
        "gateway acme refused a token from 127.0.0.1: Invalid, expired or revoked token for this workspace."
    ]
    assert "xxxx" not in caplog.text


def test_twisted_content_type_parsing_is_memoized_and_unchanged():
    from apps.gateway.asgi import _memoize_twisted_content_type

    _memoize_twisted_content_type()  # done at import when daphne has loaded Twisted first
    _memoize_twisted_content_type()  # and only once
    assert twisted_http._parseContentType.cache_info
    assert not hasattr(twisted_http._parseContentType.__wrapped__, "cache_info")
    assert twisted_http._parseContentType(b"application/json; charset=utf-8") == b"application/json"
    assert twisted_http._parseContentType(b"Multipart/Form-Data; boundary=x") == b"multipart/form-data"


async def test_a_call_cancelled_in_flight_is_on_record(cast, fix_server, issue, asgi_client, relay_gateway):
    """What daphne does to every open request at shutdown, and Django on a client disconnect:
    cancel it. The call may have reached the upstream, so it still leaves its audit row."""
    token = await sync_to_async(issue)(cast.carol)
    async with asgi_client(token) as client:
        session = await Session(client).open()
        call = asyncio.ensure_future(session.post("tools/call", name="slow", arguments={"steps": 40}))
        await asyncio.sleep(0.3)  # the upstream is working on it (2 s in all)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    await sync_to_async(relay_gateway.recorder.flush)()
    row = await ToolCall.objects.aget(tool_name="slow")
    assert (row.status, row.error_code, row.server_slug, row.member_id) == (499, None, "fix", cast.carol.pk)


def test_a_client_that_hangs_up_mid_call_cancels_it_and_the_call_is_on_record(cast, fix_server, issue, gateway):
    """A real server (uvicorn, as the README runs it): the client closes its connection while
    the upstream works on the call. The call is cancelled and recorded (499), and the
    server's next request is answered as usual."""
    import json
    import socket
    import time
    from urllib.parse import urlsplit

    import httpx2

    from tests.gateway.test_multiprocess import _initialize
    from tests.gateway.test_transport import rpc

    token = issue(cast.carol)
    base = gateway()
    with httpx2.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        headers = {**_initialize(client, base), "Authorization": f"Bearer {token}"}
        body = json.dumps(rpc("tools/call", id=9, name="slow", arguments={"steps": 60})).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        address = urlsplit(base)
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(
                f"POST /api/gw/acme HTTP/1.1\r\nHost: {address.netloc}\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.5)  # the upstream is working on it (3 s in all)
        hung_up = time.monotonic()
        deadline = hung_up + 10
        while not (rows := list(ToolCall.objects.filter(tool_name="slow"))):
            assert time.monotonic() < deadline, "the call is not on record"
            time.sleep(0.05)
        assert [(row.status, row.server_slug, row.member_id) for row in rows] == [(499, "fix", cast.carol.pk)]
        assert time.monotonic() - hung_up < 2.5, "recorded only when the upstream's answer came: not cancelled"
        again = client.post(
            f"{base}/api/gw/acme",
            json=rpc("tools/call", id=10, name="add", arguments={"a": 1, "b": 2}),
            headers=headers,
        )
        assert again.status_code == 200 and again.json()["result"]["content"][0]["text"] == "3"
