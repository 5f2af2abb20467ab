"""/api/v1/marketplace/: search and a server's details over REST, open to everybody."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import reset_generator_stats
from rest_framework.test import APIClient

from apps.marketplace.models import Server
from apps.marketplace.services import registry_index
from tests.marketplace.registry_server import OFFICIAL, SNAPSHOT, entries

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def indexed() -> list[dict]:
    assert registry_index(file=SNAPSHOT).status == "done"
    return entries(SNAPSHOT)


def test_search_is_paged_filtered_and_open_to_anyone(indexed):
    client = APIClient()  # signed out
    first = client.get("/api/v1/marketplace/servers/", {"page_size": 50}).json()
    assert first["count"] == Server.objects.listed().count() == 1108 and len(first["results"]) == 50
    assert first["next"] and first["results"][0]["grade"] in "ABCDF"
    scores = [server["score"] for server in first["results"]]
    assert scores == sorted(scores, reverse=True)  # the best first by default
    sse = client.get("/api/v1/marketplace/servers/", {"transport": "sse", "sort": "name"}).json()["results"]
    assert sse and all("sse" in server["transports"] for server in sse)
    assert [s["name"] for s in sse] == sorted(s["name"] for s in sse)
    assert client.get("/api/v1/marketplace/servers/", {"page_size": 1000}).json()["results"].__len__() == 100


def test_a_server_with_its_versions_configs_and_reasons(indexed):
    item = next(
        i
        for i in indexed
        if i["_meta"][OFFICIAL]["isLatest"] and (i["server"].get("packages") or [{}])[0].get("registryType") == "npm"
    )
    name = item["server"]["name"]
    body = APIClient().get(f"/api/v1/marketplace/servers/{name}/").json()
    assert body["name"] == name and body["version"] == item["server"]["version"]
    assert body["server_json"] == item["server"]
    assert {v["version"] for v in body["versions"]} == {
        i["server"]["version"] for i in indexed if i["server"]["name"] == name
    }
    assert body["install"]["cursor_deeplink"].startswith("cursor://") and body["install"]["claude_code_command"]
    assert sum(reason["max"] for reason in body["score_reasons"]) == 80
    missing = APIClient().get("/api/v1/marketplace/servers/no.such/server/")
    assert missing.status_code == 404 and "No server named no.such/server" in missing.json()["error"]


def test_the_schema_lists_the_marketplace_without_warnings(tmp_path):
    reset_generator_stats()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = (tmp_path / "schema.yaml").read_text()
    assert "/api/v1/marketplace/servers/:" in schema and "/api/v1/marketplace/servers/{name}/:" in schema
