"""scim2-tester, a SCIM 2.0 conformance checker, against the real server: uvicorn serving
``mcpnest.asgi`` on a free port, on the test's database, called over HTTP with a SCIM token.
"""

from __future__ import annotations

import uuid

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server, filling
from scim2_tester.checkers import patch_add, patch_replace

from apps.scim.services import scim_token_create
from apps.workspaces.management.cli import operator_access
from tests.gateway.server import gateway  # noqa: F401 - the fixture (a uvicorn subprocess)

pytestmark = pytest.mark.django_db(transaction=True)

BROKEN = {Status.ERROR, Status.CRITICAL, Status.DEVIATION}


@pytest.fixture
def email_user_names(monkeypatch):
    """Our userName is the person's email address (the login; /Schemas says so). The tester
    fills string attributes with bare UUIDs, so give it addresses for userName."""
    generate = filling.generate_random_value

    def generate_value(context, path, *args, **kwargs):
        value = generate(context, path, *args, **kwargs)
        if str(path).rsplit(".", 1)[-1] in ("userName", "user_name") and value is not None:
            return f"{uuid.uuid4()}@example.com"
        return value

    monkeypatch.setattr(filling, "generate_random_value", generate_value)
    monkeypatch.setattr(patch_add, "generate_random_value", generate_value)
    monkeypatch.setattr(patch_replace, "generate_random_value", generate_value)


def test_scim2_tester_finds_no_error(cast, gateway, email_user_names):  # noqa: F811
    raw = scim_token_create(access=operator_access(cast.acme), name="scim2-tester").raw
    base = gateway() + "/scim/v2"
    with httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {raw}"}, timeout=10) as http:
        results = check_server(SyncSCIMClient(http))
    failed = [f"{r.resource_type or ''} {r.title}: {r.reason}" for r in results if r.status in BROKEN]
    assert not failed, "\n".join(failed)
    assert {r.status for r in results} <= {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE, Status.SKIPPED}
    # It really exercised people and groups, not just discovery.
    crud = {(r.resource_type, r.title) for r in results if r.status == Status.SUCCESS}
    for resource_type in ("User", "Group"):
        for check in ("object_creation", "object_query", "object_replacement", "object_deletion"):
            assert (resource_type, check) in crud, (resource_type, check)
