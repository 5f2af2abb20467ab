"""/api/v1/marketplace/: search and a server's details over REST, open to everybody."""

from __future__ import annotations

import uuid

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.drainage import reset_generator_stats
from rest_framework.test import APIClient

from apps.marketplace.models import Collection, CollectionItem, Install, Publisher, Repository, Server
from apps.marketplace.services import curation, registry_index
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
    assert sum(reason["max"] for reason in body["score_reasons"]) == 110  # scoring: "110 in all"
    missing = APIClient().get("/api/v1/marketplace/servers/no.such/server/")
    assert missing.status_code == 404 and "No server named no.such/server" in missing.json()["error"]


def test_the_schema_lists_the_marketplace_without_warnings(tmp_path):
    reset_generator_stats()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = (tmp_path / "schema.yaml").read_text()
    assert "/api/v1/marketplace/servers/:" in schema and "/api/v1/marketplace/servers/{name}/:" in schema


# --- Curation over REST: trending, collections, publishers, versions, installs ---------------


@pytest.fixture
def fresh_limits(monkeypatch):
    """This test's own install rate-limit counters (the cache may be a shared Redis)."""
    monkeypatch.setattr(curation, "RATE_KEY", f"test-{uuid.uuid4().hex}:" + curation.RATE_KEY)


def make_server(name: str, *, namespace: str = "io.github.acme", verification: str = "", **fields) -> Server:
    publisher, _ = Publisher.objects.get_or_create(namespace=namespace, defaults={"verification": verification})
    return Server.objects.create(name=f"{namespace}/{name}", publisher=publisher, **fields)


def test_collections_and_trending_show_only_what_is_listed(django_assert_max_num_queries):
    hot = make_server("hot", installs_week=12, trending=9.5)
    warm = make_server("warm", installs_week=2, trending=1.5)
    make_server("hidden-hot", installs_week=50, trending=99, hidden=True)
    make_server("cold")
    tools = Collection.objects.create(slug="dev-tools", title="Developer tools", published=True)
    Collection.objects.create(slug="draft", title="Draft", published=False)
    CollectionItem.objects.create(collection=tools, server=warm, position=0, note="Small and sharp.")
    CollectionItem.objects.create(collection=tools, server=hot, position=1)
    CollectionItem.objects.create(collection=tools, server=Server.objects.get(hidden=True), position=2)
    client = APIClient()

    trending = client.get("/api/v1/marketplace/trending/", {"limit": 5}).json()
    assert [(s["name"], s["installs_week"]) for s in trending] == [(hot.name, 12), (warm.name, 2)]
    with django_assert_max_num_queries(3):
        listing = client.get("/api/v1/marketplace/collections/").json()
    assert listing == [
        {
            "slug": "dev-tools",
            "title": "Developer tools",
            "description": "",
            "kind": "collection",
            "servers": [warm.name, hot.name],
            "updated_at": listing[0]["updated_at"],
        }
    ]
    detail = client.get("/api/v1/marketplace/collections/dev-tools/").json()
    assert [(i["server"]["name"], i["note"]) for i in detail["items"]] == [
        (warm.name, "Small and sharp."),
        (hot.name, ""),
    ]
    draft = client.get("/api/v1/marketplace/collections/draft/")
    assert draft.status_code == 404 and draft.json() == {"error": "No collection draft."}


def test_publishers_with_their_verification_and_listed_servers(django_assert_max_num_queries):
    make_server("a", namespace="io.github.acme", verification="namespace")
    make_server("b", namespace="io.github.acme")
    make_server("x", namespace="com.example")
    make_server("ghost", namespace="io.github.ghost", hidden=True)
    client = APIClient()
    with django_assert_max_num_queries(3):
        listing = client.get("/api/v1/marketplace/publishers/").json()
    assert [(p["namespace"], p["verified"], p["servers_listed"]) for p in listing["results"]] == [
        ("com.example", False, 1),
        ("io.github.acme", True, 2),
    ]
    verified = client.get("/api/v1/marketplace/publishers/", {"verified": "1"}).json()["results"]
    assert [p["namespace"] for p in verified] == ["io.github.acme"]
    acme = client.get("/api/v1/marketplace/publishers/io.github.acme/").json()
    assert acme["verification"] == "namespace" and "signing in to GitHub" in acme["verification_reason"]
    assert [s["name"] for s in acme["servers"]] == ["io.github.acme/a", "io.github.acme/b"]
    assert client.get("/api/v1/marketplace/publishers/io.github.ghost/").status_code == 404


def test_a_servers_versions_and_its_readme(indexed):
    name = next(i["server"]["name"] for i in indexed if i["_meta"][OFFICIAL]["isLatest"])
    expected = {i["server"]["version"] for i in indexed if i["server"]["name"] == name}
    versions = APIClient().get(f"/api/v1/marketplace/servers/{name}/versions/").json()
    assert {v["version"] for v in versions} == expected and versions[0]["is_latest"]
    assert APIClient().get("/api/v1/marketplace/servers/no.such/server/versions/").status_code == 404
    server = Server.objects.get(name=name)
    Server.objects.filter(pk=server.pk).update(repository_key="acme/weather")
    Repository.objects.create(key="acme/weather", readme_html="<p>Hello</p>")
    assert APIClient().get(f"/api/v1/marketplace/servers/{name}/").json()["readme_html"] == "<p>Hello</p>"


def test_installs_count_once_a_day_under_the_hourly_limit(cast, fresh_limits, monkeypatch):
    server = make_server("weather")
    url = f"/api/v1/marketplace/servers/{server.name}/installs/"
    anonymous = APIClient(REMOTE_ADDR="203.0.113.7")
    assert anonymous.post(url, {"via": "cursor"}, format="json").json() == {"counted": True}
    assert anonymous.post(url, {"via": "vscode"}, format="json").json() == {"counted": False}
    assert Install.objects.get().visitor == curation.visitor_hash("ip:203.0.113.7")
    alice = APIClient()
    alice.force_authenticate(cast.alice)
    assert alice.post(url, {"via": "cursor"}, format="json").json() == {"counted": True}
    assert Install.objects.filter(visitor=curation.visitor_hash(f"user:{cast.alice.pk}")).exists()

    bad = anonymous.post(url, {"via": "workspace"}, format="json")
    assert bad.status_code == 400 and "via" in bad.json()["fields"]
    assert anonymous.post("/api/v1/marketplace/servers/no.such/server/installs/", {"via": "cursor"}).status_code == 404
    monkeypatch.setattr(curation, "INSTALLS_PER_HOUR", 2)  # anonymous has asked twice (refusals aside)
    limited = anonymous.post(url, {"via": "cursor"}, format="json")
    assert limited.status_code == 429 and "try again later" in limited.json()["error"]


def test_the_schema_lists_the_curation_endpoints(tmp_path):
    reset_generator_stats()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    for path, method in [
        ("/api/v1/marketplace/trending/", "get"),
        ("/api/v1/marketplace/collections/", "get"),
        ("/api/v1/marketplace/collections/{slug}/", "get"),
        ("/api/v1/marketplace/publishers/", "get"),
        ("/api/v1/marketplace/publishers/{namespace}/", "get"),
        ("/api/v1/marketplace/servers/{name}/versions/", "get"),
        ("/api/v1/marketplace/servers/{name}/installs/", "post"),
    ]:
        assert schema["paths"][path][method]["tags"] == ["marketplace"], path
    installs = schema["paths"]["/api/v1/marketplace/servers/{name}/installs/"]["post"]
    assert set(installs["responses"]) >= {"200", "400", "404", "429"}
