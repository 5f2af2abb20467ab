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
