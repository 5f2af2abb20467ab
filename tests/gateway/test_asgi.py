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
