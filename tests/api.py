"""REST API clients for the tests: a signed-in one (the ``client_for`` fixture) or a script's."""

from __future__ import annotations

from rest_framework.test import APIClient


def bearer(raw: str) -> APIClient:
    """A client that authenticates like a script, with ``Authorization: Bearer <raw>``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client
