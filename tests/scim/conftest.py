"""SCIM test helpers: a SCIM token per workspace of the cast, a client that sends it, and
the identity providers' documented bodies (``tests/scim/data``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from apps.scim.services import scim_token_create
from apps.workspaces.management.cli import operator_access

DATA = Path(__file__).parent / "data"
BASE = "/scim/v2"


def body(name: str, **ids: str) -> dict:
    """A documented request body, with the documentation's example ids swapped for ours
    (``body("entra_group_add_member", f648f8d5ea4e4cd38e9c=str(user.pk))``)."""
    text = (DATA / f"{name}.json").read_text()
    for old, new in ids.items():
        text = text.replace(old, new)
    return json.loads(text)


class Scim:
    """A SCIM client for one bearer token, speaking application/scim+json."""

    def __init__(self, raw: str | None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {raw}"} if raw else {}

    def _send(self, method: str, path: str, data=None):
        kwargs = {"headers": self.headers}
        if data is not None:
            kwargs.update(data=json.dumps(data), content_type="application/scim+json")
        return getattr(self.client, method)(BASE + path, **kwargs)

    def get(self, path: str):
        return self._send("get", path)

    def post(self, path: str, data: dict):
        return self._send("post", path, data)

    def put(self, path: str, data: dict):
        return self._send("put", path, data)

    def patch(self, path: str, data: dict):
        return self._send("patch", path, data)

    def delete(self, path: str):
        return self._send("delete", path)


@pytest.fixture
def acme_token(cast) -> str:
    return scim_token_create(access=operator_access(cast.acme), name="Entra").raw


@pytest.fixture
def globex_token(cast) -> str:
    return scim_token_create(access=operator_access(cast.globex), name="Okta").raw


@pytest.fixture
def acme_idp(acme_token) -> Scim:
    return Scim(acme_token)


@pytest.fixture
def globex_idp(globex_token) -> Scim:
    return Scim(globex_token)
