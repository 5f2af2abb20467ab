"""Deprovisioning reaches the gateway: once the IdP switches a person off (Entra's PATCH)
or deletes them, the next gateway call with their ``mng_`` token is refused within a
second, through the real ASGI application and its caching gateway (no cache poked)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from apps.tokens.services import token_create
from tests.gateway.conftest import asgi_client, relay_gateway  # noqa: F401 - fixtures
from tests.gateway.test_governance import Session
from tests.scim.conftest import Scim, body

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN = 1.0  # seconds: the gateway re-reads invalidation epochs twice a second


async def refused_within(session: Session, seconds: float) -> float:
    """Poll with the token until the gateway answers 401; how long that took."""
    start = time.monotonic()
    while True:
        response = await session.post("ping")
        if response.status_code == 401:
            return time.monotonic() - start
        assert response.status_code == 200, response.text
        elapsed = time.monotonic() - start
        assert elapsed < seconds, f"the gateway still accepted the token {elapsed:.2f}s after deprovisioning"
        await asyncio.sleep(0.02)


def _provisioned_member_with_token(cast, acme_token: str, shape: str) -> tuple[Scim, str, str]:
    idp = Scim(acme_token)
    user_id = idp.post("/Users", body(shape)).json()["id"]
    member = cast.acme.memberships.get(user_id=user_id).user
    raw = token_create(access=cast.access(cast.alice), member=member).raw
    return idp, user_id, raw


@pytest.mark.parametrize("how", ["entra_disable_user_string_false", "okta_deactivate_user", "delete"])
async def test_a_deprovisioned_persons_token_is_refused_within_a_second(cast, acme_token, asgi_client, how):  # noqa: F811
    shape = "okta_create_user" if how.startswith("okta") else "entra_create_user"
    idp, user_id, raw = await sync_to_async(_provisioned_member_with_token)(cast, acme_token, shape)
    session = await Session(asgi_client(raw)).open()
    assert (await session.call("ping"))["result"] == {}
    await asyncio.sleep(0.6)  # the token is now cached, and the epochs were read a while ago

    if how == "delete":
        response = await sync_to_async(idp.delete)(f"/Users/{user_id}")
        assert response.status_code == 204
    else:
        response = await sync_to_async(idp.patch)(f"/Users/{user_id}", body(how))
        assert response.status_code == 200 and response.json()["active"] is False

    await refused_within(session, WITHIN)
    # A fresh connection with the same token is refused too.
    fresh = await asgi_client(raw).post("/api/gw/acme", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert fresh.status_code == 401


async def test_an_existing_members_token_is_refused_when_the_idp_removes_them(cast, acme_token, asgi_client):  # noqa: F811
    raw = await sync_to_async(lambda: token_create(access=cast.access(cast.carol), member=cast.carol).raw)()
    session = await Session(asgi_client(raw)).open()
    assert (await session.call("ping"))["result"] == {}
    await asyncio.sleep(0.6)
    response = await sync_to_async(Scim(acme_token).patch)(f"/Users/{cast.carol.pk}", body("entra_disable_user"))
    assert response.status_code == 200
    await refused_within(session, WITHIN)
