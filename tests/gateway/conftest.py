from __future__ import annotations

import httpx2
import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from apps.audit.models import ToolCall
from apps.gateway.host import build_gateway
from apps.tokens.services import token_create
from mcpnest.asgi import build_application
from tests.gateway.server import gateway  # noqa: F401 - a fixture (a uvicorn subprocess)
from tests.gateway.upstream import build_server, running


@pytest.fixture(scope="session")
def upstream():
    with running(build_server("fixture")) as server:
        yield server


@pytest.fixture
def relay_gateway():
    """A gateway of this test's own (the process's would carry state between tests)."""
    own = build_gateway()
    own.shared.clear_for_tests()  # Redis keeps counters and ended sessions between tests
    yield own
    own.stop_sync()
    # The async ORM (aget, aexists) runs in asgiref's one sync thread; close its connection
    # so the test database can be dropped.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def rows(relay_gateway):
    """The calls on record (after the gateway's spool is written), in order."""

    def read(**filters):
        relay_gateway.recorder.flush()
        return list(ToolCall.objects.filter(**filters).order_by("seq"))

    return read


@pytest.fixture
def asgi_client(relay_gateway):
    """An httpx2 client that calls the real ASGI application in-process, around this test's gateway."""
    application = build_application(relay_gateway)

    def make(token: str | None = None, **headers) -> httpx2.AsyncClient:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=application), base_url="http://testserver", headers=headers
        )

    return make


@pytest.fixture
def issue(cast):
    def make(user=None, *, workspace=None, kind="member"):
        workspace = workspace or cast.acme
        actor = user if user is not None else cast.alice
        access = cast.access(actor, workspace)
        return token_create(access=access, member=user, kind=kind).raw

    return make


@pytest.fixture
def fix_server(cast, upstream, django_capture_on_commit_callbacks):
    """The fixture upstream, added (and so approved and pinned) to acme by its Owner.

    The approval is a task queued on commit: run here as it runs after a real commit (in
    ``transaction=True`` tests it has already run when ``server_add`` returns)."""
    from apps.gateway.services import server_add

    with django_capture_on_commit_callbacks(execute=True):
        server = server_add(access=cast.access(cast.alice), slug="fix", url=upstream.url)
    server.refresh_from_db()
    return server
