from __future__ import annotations

import httpx2
import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from apps.core.shared_state import shared
from apps.gateway.runtime import engine
from apps.gateway.runtime.recorder import recorder
from apps.gateway.runtime.state import snapshots
from apps.tokens.services import token_create
from tests.gateway.daphne import gateway  # noqa: F401 - a fixture
from tests.gateway.upstream import build_server, running


@pytest.fixture(scope="session")
def upstream():
    with running(build_server("fixture")) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_gateway_state():
    snapshots.clear()
    engine.invalidate_catalogs()
    shared.clear_for_tests()
    recorder.forget_uses()
    yield
    recorder.flush()
    # The async ORM (aget, aexists) runs in asgiref's one sync thread; close its connection
    # so the test database can be dropped.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def asgi_client():
    """An httpx2 client that calls the real ASGI application in-process."""
    from mcpnest.asgi import application

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
def fix_server(cast, upstream):
    """The fixture upstream, added (and so approved and pinned) to acme by its Owner."""
    from apps.gateway.services import server_add

    return server_add(access=cast.access(cast.alice), slug="fix", url=upstream.url)
