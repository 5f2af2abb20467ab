"""Hosted-server tests run the real bridge as a subprocess (ProcessRuntime) and call it
through the real gateway; the gateway's fixtures are shared from tests/gateway."""

from __future__ import annotations

import pytest

from apps.hosting.models import AllowedImage
from tests.gateway.conftest import asgi_client, issue, relay_gateway  # noqa: F401 - fixtures
from tests.gateway.server import gateway  # noqa: F401 - the real gateway (uvicorn), a fixture


@pytest.fixture
def process_runtime(hosted_processes):
    """The test's own ProcessRuntime (tests/conftest.py makes it for every test)."""
    return hosted_processes


@pytest.fixture
def keyed(db) -> AllowedImage:
    """A server that needs an API key, and dies at start without it."""
    return AllowedImage.objects.create(
        slug="keyed",
        name="Keyed notes",
        image="local/process",
        mcp_command="python -m apps.hosting.servers.notes --require NOTES_API_KEY",
        required_env_vars=[
            {"key": "NOTES_API_KEY", "label": "API key", "type": "password", "help": "", "required": True}
        ],
        verified=True,
    )
