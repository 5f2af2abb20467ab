"""Our own registry API (/v0.1/servers…), served from an index of the real 2025-12-18
snapshot: the same items come back, in the official shapes, paged by cursor; and our own
indexer can read it as it reads the official registry."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from apps.marketplace.models import IndexRun, Server
from apps.marketplace.services import registry_index
from tests.marketplace.registry_server import OFFICIAL, SNAPSHOT, entries

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def snapshot() -> list[dict]:
    assert registry_index(file=SNAPSHOT).status == IndexRun.Status.DONE
    return entries(SNAPSHOT)


def _all(client, **params) -> tuple[list[dict], int]:
    items, pages, cursor = [], 0, None
    while True:
        query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v0.1/servers", query).json()
        items += body["servers"]
        pages += 1
        assert body["metadata"]["count"] == len(body["servers"])
        cursor = body["metadata"].get("nextCursor")
        if not cursor:
            return items, pages


def _key(item) -> tuple[str, str]:
    return item["server"]["name"], item["server"]["version"]


def test_every_item_comes_back_as_it_was_published(client, snapshot):
    served, pages = _all(client)
    assert len(served) == 2794 and pages == 28
    assert [_key(i) for i in served] == sorted(_key(i) for i in served)  # a stable order
    original = {_key(i): i for i in snapshot}
    for item in served:
        source = original[_key(item)]
        assert item["server"] == source["server"]
        ours, theirs = item["_meta"][OFFICIAL], source["_meta"][OFFICIAL]
        assert (ours["status"], ours["isLatest"]) == (theirs["status"], theirs["isLatest"])
        assert ours["publishedAt"][:19] == theirs["publishedAt"][:19]


def test_filters_and_the_single_server_endpoints(client, snapshot):
    latest, _ = _all(client, version="latest")
    assert len(latest) == 1108 and all(i["_meta"][OFFICIAL]["isLatest"] for i in latest)
    newest = max(i["_meta"][OFFICIAL]["updatedAt"] for i in snapshot)
    recent, _ = _all(client, updated_since="2025-12-01T00:00:00Z")
    expected = [i for i in snapshot if i["_meta"][OFFICIAL]["updatedAt"] > "2025-12-01T00:00:00Z"]
    assert len(recent) == len(expected) and newest >= "2025-12-01"

    name = next(
        i["server"]["name"] for i in snapshot if sum(j["server"]["name"] == i["server"]["name"] for j in snapshot) > 2
    )
    versions = client.get(f"/v0.1/servers/{quote(name, safe='')}/versions").json()["servers"]
    assert {v["server"]["version"] for v in versions} == {
        i["server"]["version"] for i in snapshot if i["server"]["name"] == name
    }
    one = client.get(f"/v0.1/servers/{quote(name, safe='')}/versions/latest").json()
    assert one["_meta"][OFFICIAL]["isLatest"] and one["server"]["name"] == name
    pinned = versions[-1]["server"]["version"]
    assert client.get(f"/v0.1/servers/{quote(name, safe='')}/versions/{pinned}").json()["server"]["version"] == pinned

    Server.objects.filter(name=name).update(hidden=True)  # staff hid it: not served at all
    assert client.get(f"/v0.1/servers/{quote(name, safe='')}/versions").status_code == 404
    assert name not in {i["server"]["name"] for i in client.get("/v0.1/servers", {"search": name}).json()["servers"]}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": "0"}, "limit must be a whole number from 1 to 100"),
        ({"limit": "many"}, "limit must be a whole number from 1 to 100"),
        ({"cursor": "not-a-cursor"}, "cursor is not one this registry gave out"),
        ({"updated_since": "yesterday"}, "updated_since must be an RFC 3339 time"),
        ({"updated_since": "2025-12-01T00:00:00"}, "updated_since needs a time zone"),
    ],
)
def test_bad_parameters_are_400_with_what_to_fix(client, params, detail):
    response = client.get("/v0.1/servers", params)
    assert response.status_code == 400 and response.json()["detail"].startswith(detail)


def test_our_indexer_reads_our_registry(live_server, snapshot):
    run = registry_index(url=live_server.url)
    assert (run.status, run.seen, run.written, run.skipped) == (IndexRun.Status.DONE, 2794, 0, 0)


# --- a workspace's own registry: /api/registry/<slug>/v0.1/… ------------------------------


@pytest.fixture
def governed(cast, tmp_path):
    """acme approved the tickets server's endpoint (and only requested the wiki's) and runs
    the hosted filesystem server; globex approved the wiki. Tokens: carol's (acme Member)
    and dave's (globex Owner)."""
    from apps.gateway.models import UpstreamServer
    from apps.hosting.models import AllowedImage, Instance
    from apps.tokens.services import token_create
    from tests.marketplace.test_search import NPM, REMOTE, index, item

    filesystem = {**NPM, "identifier": "@modelcontextprotocol/server-filesystem", "environmentVariables": []}
    wiki = {**REMOTE, "url": "https://wiki.example.com/mcp"}
    first = item("io.github.modelcontextprotocol/server-filesystem", packages=[filesystem], version="1.0.0")
    first["_meta"][OFFICIAL]["isLatest"] = False
    index(
        tmp_path,
        [
            item("com.example/tickets", remotes=[REMOTE]),
            item("com.example/wiki", remotes=[wiki]),
            first,
            item("io.github.modelcontextprotocol/server-filesystem", packages=[filesystem], version="1.1.0"),
            item("io.github.acme/weather-forecast", packages=[NPM]),  # stdio, not in the catalog
        ],
    )
    UpstreamServer.objects.create(workspace=cast.acme, slug="tickets", url=REMOTE["url"], status="approved")
    UpstreamServer.objects.create(workspace=cast.acme, slug="wiki", url=wiki["url"], status="requested")
    UpstreamServer.objects.create(workspace=cast.globex, slug="wiki", url=wiki["url"] + "/", status="approved")
    image, _ = AllowedImage.objects.update_or_create(
        slug="filesystem",
        defaults={
            "name": "Filesystem",
            "image": "mcpnest/runtime",
            "mcp_command": "mcp-server-filesystem /tmp",
            "registry_package": "npm:@modelcontextprotocol/server-filesystem",
        },
    )
    instance = Instance.objects.create(workspace=cast.acme, image=image, status=Instance.Status.RUNNING)
    carol = token_create(access=cast.access(cast.carol), member=cast.carol, name="carol's registry")
    dave = token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave, name="dave's registry")
    return carol, dave, instance


def _bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_a_workspace_registry_answers_only_a_token_of_that_workspace(client, governed):
    carol, dave, _ = governed
    url = "/api/registry/acme/v0.1/servers"
    for headers in (
        {},
        _bearer(""),
        _bearer("mng_" + "0" * 48),
        _bearer("not-a-token"),
        {"HTTP_AUTHORIZATION": "Basic eA=="},
    ):
        response = client.get(url, **headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer") and response.json()["status"] == 401
    assert carol.raw not in client.get(url, **_bearer(carol.raw + "x")).content.decode()
    # A token of another workspace: that registry does not exist for it (nor does a made-up one).
    assert client.get(url, **_bearer(dave.raw)).status_code == 404
    assert client.get("/api/registry/globex/v0.1/servers", **_bearer(carol.raw)).status_code == 404
    assert client.get("/api/registry/nowhere/v0.1/servers", **_bearer(carol.raw)).status_code == 404
    ok = client.get(url, **_bearer(carol.raw))
    assert ok.status_code == 200 and "no-store" in ok["Cache-Control"] and "Authorization" in ok["Vary"]
    carol.token.revoked_at = carol.token.created_at
    carol.token.save(update_fields=["revoked_at"])
    assert client.get(url, **_bearer(carol.raw)).status_code == 401


def test_a_workspace_registry_lists_what_the_workspace_approved_page_by_page(client, governed):
    carol, dave, instance = governed
    served, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/registry/acme/v0.1/servers", params, **_bearer(carol.raw)).json()
        served += [(i["server"]["name"], i["server"]["version"]) for i in body["servers"]]
        cursor = body["metadata"].get("nextCursor")
        if not cursor:
            break
    # The approved endpoint and the hosted server's versions; not the requested wiki, nor a
    # stdio server the catalog cannot run.
    assert served == [
        ("com.example/tickets", "1.0.0"),
        ("io.github.modelcontextprotocol/server-filesystem", "1.0.0"),
        ("io.github.modelcontextprotocol/server-filesystem", "1.1.0"),
    ]
    latest = client.get("/api/registry/acme/v0.1/servers", {"version": "latest"}, **_bearer(carol.raw)).json()
    assert [(i["server"]["name"], i["server"]["version"]) for i in latest["servers"]] == [
        ("com.example/tickets", "1.0.0"),
        ("io.github.modelcontextprotocol/server-filesystem", "1.1.0"),
    ]
    base = "/api/registry/acme/v0.1/servers/"
    versions = client.get(
        base + quote("io.github.modelcontextprotocol/server-filesystem", safe="") + "/versions", **_bearer(carol.raw)
    )
    assert {i["server"]["version"] for i in versions.json()["servers"]} == {"1.0.0", "1.1.0"}
    one = client.get(base + quote("com.example/tickets", safe="") + "/versions/latest", **_bearer(carol.raw))
    assert one.status_code == 200 and one.json()["server"]["name"] == "com.example/tickets"
    assert client.get(base + quote("com.example/wiki", safe="") + "/versions", **_bearer(carol.raw)).status_code == 404
    # globex approved the wiki (its URL with a trailing slash): the same server.
    globex = client.get("/api/registry/globex/v0.1/servers", **_bearer(dave.raw)).json()
    assert [i["server"]["name"] for i in globex["servers"]] == ["com.example/wiki"]
    # Stopped, the hosted server leaves acme's registry.
    instance.status = instance.Status.STOPPED
    instance.save(update_fields=["status"])
    left = client.get("/api/registry/acme/v0.1/servers", **_bearer(carol.raw)).json()
    assert [i["server"]["name"] for i in left["servers"]] == ["com.example/tickets"]
