"""The marketplace's pages over an index of real registry entries: search, facets, a server's
page with its install configs; open to everybody, and never showing what is hidden."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.db import connection
from django.urls import reverse

from apps.marketplace.models import Server
from apps.marketplace.services import registry_index
from tests.marketplace.registry_server import SNAPSHOT, entries

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def indexed(tmp_path) -> list[dict]:
    items = entries(SNAPSHOT)[:600]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps(items))
    assert registry_index(file=path).status == "done"
    return items


def _names(response) -> list[str]:
    return re.findall(r"<code>([^<]+/[^<]+)</code> · ", response.content.decode())


def test_anyone_searches_and_filters(client, indexed):
    everything = client.get(reverse("marketplace:list"))
    assert everything.status_code == 200
    listed = Server.objects.listed().count()
    assert f"{listed} servers" in everything.content.decode()

    word = "github"
    found = client.get(reverse("marketplace:list"), {"q": word})
    names = _names(found)
    assert names
    for name in names:
        server = Server.objects.get(name=name)
        assert word in f"{server.name} {server.title} {server.description}".lower()

    sse = client.get(reverse("marketplace:list"), {"transport": "sse", "sort": "name"})
    names = _names(sse)
    assert names == sorted(names) and names
    assert all("sse" in Server.objects.get(name=n).transports for n in names)
    npm = _names(client.get(reverse("marketplace:list"), {"package": "npm", "remote": "1"}))
    assert all(s.remote and "npm" in s.package_types for s in Server.objects.filter(name__in=npm))
    # Unknown values are ignored rather than failing the page.
    odd = client.get(reverse("marketplace:list"), {"transport": "carrier-pigeon", "sort": "?", "page": "x"})
    assert odd.status_code == 200 and f"{listed} servers" in odd.content.decode()


def test_a_server_page_gives_every_clients_config_without_a_value(client, indexed):
    item = next(
        i
        for i in indexed
        if i["_meta"]["io.modelcontextprotocol.registry/official"]["isLatest"]
        and any(v.get("isSecret") for p in i["server"].get("packages", []) for v in p.get("environmentVariables", []))
        and i["server"]["packages"][0].get("registryType") == "npm"
    )
    page = client.get(reverse("marketplace:detail", args=[item["server"]["name"]]))
    assert page.status_code == 200
    body = html.unescape(page.content.decode())
    for label in ("Claude Desktop", "Claude Code", "Cursor", "VS Code", "Windsurf"):
        assert f">{label}" in body
    assert "cursor://anysphere.cursor-deeplink/mcp/install?name=" in body
    assert "vscode:mcp/install?" in body
    secret = next(v["name"] for v in item["server"]["packages"][0]["environmentVariables"] if v.get("isSecret"))
    assert f"${{env:{secret}}}" in body and f"<code>{secret}</code> (secret)" in body
    assert item["server"]["version"] in body


def test_hidden_deleted_and_unknown_servers_are_not_found(client, indexed):
    shown, hidden = Server.objects.listed()[:2]
    Server.objects.filter(pk=hidden.pk).update(hidden=True)
    assert client.get(reverse("marketplace:detail", args=[shown.name])).status_code == 200
    assert client.get(reverse("marketplace:detail", args=[hidden.name])).status_code == 404
    Server.objects.filter(pk=shown.pk).update(status=Server.Status.DELETED)
    assert client.get(reverse("marketplace:detail", args=[shown.name])).status_code == 404
    assert client.get(reverse("marketplace:detail", args=["no.such/server"])).status_code == 404
    assert hidden.name not in client.get(reverse("marketplace:list"), {"q": hidden.name.split("/")[1]}).content.decode()


def test_what_publishers_wrote_is_shown_as_text(client, indexed):
    server = Server.objects.listed().first()
    Server.objects.filter(pk=server.pk).update(
        description='<script>alert(1)</script><img src=x onerror="alert(2)">', title="<b>bold</b>"
    )
    for url in (reverse("marketplace:detail", args=[server.name]), f"{reverse('marketplace:list')}?q={server.name}"):
        body = client.get(url).content.decode()
        assert server.name in body
        assert "<script>alert(1)" not in body and "<img src=x" not in body and "<b>bold</b>" not in body
        assert "&lt;script&gt;" in body


@pytest.mark.skipif(connection.vendor != "postgresql", reason="typo tolerance is PostgreSQL's (pg_trgm)")
def test_postgres_forgives_a_typo_in_the_name(client, indexed):
    server = Server.objects.listed().exclude(name__icontains="test").first()
    typo = server.name[:-2] + server.name[-1]  # one letter dropped
    assert server.name in _names(client.get(reverse("marketplace:list"), {"q": typo}))


def test_the_filters_say_how_many_each_choice_leaves(client, indexed):
    page = client.get(reverse("marketplace:list")).content.decode()
    listed = Server.objects.listed()
    for transport in ("stdio", "streamable-http", "sse"):
        count = sum(1 for s in listed if transport in s.transports)
        assert f'<option value="{transport}">{transport} ({count})</option>' in page
    # With a transport chosen, the package counts are of those servers only.
    sse = client.get(reverse("marketplace:list"), {"transport": "sse"}).content.decode()
    npm = sum(1 for s in listed if "sse" in s.transports and "npm" in s.package_types)
    assert f'<option value="npm">npm ({npm})</option>' in sse
    assert '<option value="sse" selected>sse (' in sse
