"""Hosted-server tests run the real bridge as a subprocess (ProcessRuntime) and call it
through the real gateway; the gateway's fixtures are shared from tests/gateway."""

from __future__ import annotations

import importlib

import pytest

from apps.hosting import runtimes
from apps.hosting.models import AllowedImage
from tests.gateway.conftest import asgi_client, issue, relay_gateway  # noqa: F401 - fixtures
from tests.gateway.daphne import gateway  # noqa: F401 - the real gateway (daphne), a fixture


@pytest.fixture(autouse=True)
def process_runtime(tmp_path, monkeypatch):
    """A ProcessRuntime of this test's own (logs under tmp_path); whatever it started is stopped after."""
    runtime = runtimes.ProcessRuntime(log_dir=tmp_path / "hosting")
    monkeypatch.setattr(runtimes, "_process_runtime", runtime)
    yield runtime
    for pid in list(runtime._children):
        runtime.stop(str(pid))


@pytest.fixture
def notes(db) -> AllowedImage:
    """The catalog entry a data migration seeds (again here: transactional tests empty the tables)."""
    seeded = importlib.import_module("apps.hosting.migrations.0002_seed_notes").NOTES
    return AllowedImage.objects.get_or_create(slug="notes", defaults=seeded)[0]


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
