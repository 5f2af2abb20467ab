"""The config tools' corpus (``corpus/``) and a marketplace index built from real registry
entries of the 2025-12-18 snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.marketplace.models import Publisher, Server, ServerVersion
from apps.marketplace.services import registry_index
from tests.marketplace.registry_server import SNAPSHOT, entries

CORPUS = Path(__file__).resolve().parent / "corpus"
CLEAN = sorted((CORPUS / "clean").glob("*.json"))
RULE_CASES = {path.stem: path for path in sorted((CORPUS / "rules").glob("*.json"))}
# Real servers: an npm package with a required secret and five versions, and a remote.
AIRTABLE = "io.github.domdomegg/airtable-mcp-server"
DIALER = "app.getdialer/dialer"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def client_of(path: Path) -> str:
    """``vscode-docker.json`` → ``vscode``: each clean file is named after its client."""
    return next(c for c in ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf") if path.stem.startswith(c))


@pytest.fixture(scope="session")
def snapshot() -> list[dict]:
    return entries(SNAPSHOT)


@pytest.fixture
def real_index(db, snapshot, tmp_path) -> None:
    """Index every version of the two real servers, as the marketplace's indexer does."""
    subset = [item for item in snapshot if item["server"]["name"] in (AIRTABLE, DIALER)]
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(subset))
    registry_index(file=path)


def seed_index(servers: list[dict]) -> None:
    """Servers as a corpus case gives them: name, version, document, and archived/status."""
    for spec in servers:
        publisher, _ = Publisher.objects.get_or_create(namespace=spec["name"].split("/")[0])
        server = Server.objects.create(
            name=spec["name"],
            publisher=publisher,
            version=spec["version"],
            archived=spec.get("archived", False),
            status=spec.get("status", Server.Status.ACTIVE),
            tools=spec.get("tools", []),
        )
        ServerVersion.objects.create(
            server=server, version=spec["version"], is_latest=True, status=server.status, document=spec["document"]
        )
