"""The marketplace's pages over an index of real registry entries: search, facets, a server's
page with its install configs; open to everybody, and never showing what is hidden."""

from __future__ import annotations

import datetime
import html
import json
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.marketplace import selectors
from apps.marketplace.models import (
    Collection,
    CollectionItem,
    FeaturedServer,
    Install,
    Publisher,
    Repository,
    Server,
)
from apps.marketplace.services import curation, registry_index
from apps.marketplace.services.indexing import with_categories
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


# --- Curation: filters, the home sections, collections, publishers, README, installs --------


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch):
    """Each test its own install rate-limit counters (the cache may be a shared Redis)."""
    monkeypatch.setattr(curation, "RATE_KEY", f"test-{uuid.uuid4().hex}:" + curation.RATE_KEY)


def make_server(name: str, *, namespace: str = "io.github.acme", verification: str = "", **fields) -> Server:
    publisher, _ = Publisher.objects.get_or_create(namespace=namespace, defaults={"verification": verification})
    fields.setdefault("version", "1.0.0")
    fields.setdefault("score", 50)
    fields.setdefault("grade", "C")
    # The facet words as indexing writes them: the clients given, and the categories.
    clients = fields.pop("clients", [])
    fields["facets"] = with_categories(" ".join(f"client:{c}" for c in clients), fields.get("categories", []))
    return Server.objects.create(name=f"{namespace}/{name}", publisher=publisher, **fields)


def test_the_filters_offer_categories_clients_and_trending(client):
    make_server("maps", categories=["Location Services", "Travel & Transportation"], clients=["vscode", "cursor"])
    make_server("db", categories=["Databases"], clients=["vscode"])
    make_server("gone", categories=["Security"], hidden=True)
    body = client.get(reverse("marketplace:list")).content.decode()
    options = re.findall(r'<select id="category" name="category">(.*?)</select>', body, re.S)[0]
    # Only the categories listed servers are in, with their counts.
    assert re.findall(r'<option value="([^"]+)">([^<]+)</option>', options) == [
        ("databases", "Databases (1)"),
        ("location-services", "Location Services (1)"),
        ("travel-transportation", "Travel &amp; Transportation (1)"),
    ]
    clients = re.findall(r'<select id="client" name="client">(.*?)</select>', body, re.S)[0]
    assert re.findall(r'<option value="([^"]+)">([^<]+)</option>', clients) == [
        ("claude-desktop", "Claude Desktop (0)"),
        ("claude-code", "Claude Code (0)"),
        ("cursor", "Cursor (1)"),
        ("vscode", "VS Code (2)"),
        ("windsurf", "Windsurf (0)"),
    ]

    chosen = client.get(reverse("marketplace:list"), {"category": "databases", "client": "vscode", "sort": "trending"})
    body = chosen.content.decode()
    assert _names(chosen) == ["io.github.acme/db"]
    assert '<option value="databases" selected>Databases (1)</option>' in body
    assert '<option value="vscode" selected>VS Code (1)</option>' in body  # counts keep the category
    assert '<option value="trending" selected>Trending</option>' in body


def test_the_home_sections_show_the_week_trending_and_collections(client, django_assert_max_num_queries):
    monday = selectors.week_of(timezone.localdate())
    featured = make_server("weather", title="Weather", description="Forecasts.")
    last_week = make_server("old-news")
    FeaturedServer.objects.create(week=monday, server=featured, blurb="Forecasts for every city.")
    FeaturedServer.objects.create(week=monday - datetime.timedelta(days=7), server=last_week)
    hot = make_server("hot", title="Hot", installs_week=12, trending=9.5)
    warm = make_server("warm", title="Warm", installs_week=1, trending=1.0)
    make_server("hidden-hot", installs_week=50, trending=99, hidden=True)
    starter = Collection.objects.create(slug="starter", title="Starter pack", kind="starter-pack", published=True)
    Collection.objects.create(slug="draft", title="Draft picks", published=False)
    for server in (hot, warm):
        CollectionItem.objects.create(collection=starter, server=server)

    with django_assert_max_num_queries(12):
        body = client.get(reverse("marketplace:list")).content.decode()
    featured_section = re.findall(r'<section class="card" id="server-of-the-week".*?</section>', body, re.S)[0]
    assert "Weather" in featured_section and "Forecasts for every city." in featured_section
    trending = re.findall(r'<section class="card" id="trending".*?</section>', body, re.S)[0]
    assert re.findall(r">(\w+)</a> <span class=\"muted\">— (\d+) installs? this week", trending) == [
        ("Hot", "12"),
        ("Warm", "1"),
    ]
    assert "hidden-hot" not in body
    assert "Starter pack" in body and "2 servers" in body and "Draft picks" not in body

    searched = client.get(reverse("marketplace:list"), {"q": "weather"}).content.decode()
    assert 'id="server-of-the-week"' not in searched and 'id="trending"' not in searched
    # A hidden server of the week is not shown.
    Server.objects.filter(pk=featured.pk).update(hidden=True)
    assert 'id="server-of-the-week"' not in client.get(reverse("marketplace:list")).content.decode()


def test_collections_show_listed_servers_and_unpublished_ones_are_not_found(client, django_assert_max_num_queries):
    tools = Collection.objects.create(slug="dev-tools", title="Developer tools", published=True, description="Picks.")
    draft = Collection.objects.create(slug="draft", title="Draft", published=False)
    shown = [make_server(f"tool-{n}", title=f"Tool {n}") for n in range(5)]
    hidden = make_server("secret-tool", title="Secret tool", hidden=True)
    for position, server in enumerate([*shown, hidden]):
        CollectionItem.objects.create(collection=tools, server=server, position=position, note=f"note {position}")
    CollectionItem.objects.create(collection=draft, server=shown[0])

    with django_assert_max_num_queries(6):
        listing = client.get(reverse("marketplace:collections")).content.decode()
    assert "Developer tools" in listing and "Draft" not in listing and "5 servers" in listing
    with django_assert_max_num_queries(6):
        page = client.get(reverse("marketplace:collection", args=["dev-tools"]))
    body = page.content.decode()
    assert page.status_code == 200
    assert re.findall(r">Tool (\d)</a>", body) == ["0", "1", "2", "3", "4"]
    assert "<em>note 2</em>" in body and "Secret tool" not in body
    assert client.get(reverse("marketplace:collection", args=["draft"])).status_code == 404
    assert client.get(reverse("marketplace:collection", args=["nothing"])).status_code == 404
    # The server's own page names the published collections it is in.
    detail = client.get(reverse("marketplace:detail", args=[shown[0].name])).content.decode()
    assert 'href="/collections/dev-tools/">Developer tools</a>' in detail and "/collections/draft/" not in detail


@pytest.mark.parametrize(
    ("namespace", "verification", "reason"),
    [
        ("io.github.acme", "namespace", "by signing in to GitHub as its owner"),
        ("com.example", "namespace", "by a DNS or HTTP challenge on its domain"),
        ("io.github.someone", "staff", "Verified by MCPNest staff"),
        ("io.github.nobody", "", "Not verified"),
    ],
)
def test_a_publisher_page_says_why_it_is_verified(
    client, namespace, verification, reason, django_assert_max_num_queries
):
    servers = [make_server(f"s{n}", namespace=namespace, verification=verification) for n in range(4)]
    make_server("hidden", namespace=namespace, hidden=True)
    with django_assert_max_num_queries(5):
        page = client.get(reverse("marketplace:publisher", args=[namespace]))
    body = page.content.decode()
    assert page.status_code == 200 and reason in body
    assert ("Verified publisher" in body) == bool(verification)
    assert set(_names(page)) == {s.name for s in servers}
    # The server page links to it.
    detail = client.get(reverse("marketplace:detail", args=[servers[0].name])).content.decode()
    assert f'href="/publishers/{namespace}/"' in detail


def test_a_publisher_with_nothing_listed_is_not_found(client):
    make_server("only", namespace="io.github.ghost", hidden=True)
    assert client.get(reverse("marketplace:publisher", args=["io.github.ghost"])).status_code == 404
    assert client.get(reverse("marketplace:publisher", args=["io.github.nobody"])).status_code == 404


def test_the_server_page_shows_its_readme_licence_topics_and_installs(client, django_assert_max_num_queries):
    server = make_server(
        "weather",
        repository_key="acme/weather",
        license="MIT",
        topics=["mcp", "weather"],
        installs_week=7,
        description="<script>alert(1)</script>",
    )
    # As apps.marketplace.readme stores it: rendered and sanitised.
    Repository.objects.create(key="acme/weather", readme_html="<h1>Weather MCP</h1><p>Run <code>npx weather</code></p>")
    with django_assert_max_num_queries(8):
        body = client.get(reverse("marketplace:detail", args=[server.name])).content.decode()
    assert "<h1>Weather MCP</h1><p>Run <code>npx weather</code></p>" in body
    assert "<dt>Licence</dt><dd>MIT</dd>" in body
    assert '<span class="badge">weather</span>' in body
    assert "7 installs this week" in body
    assert "<script>alert(1)" not in body  # the description is still text
    other = make_server("maps", repository_key="acme/maps")
    assert 'id="readme-h"' not in client.get(reverse("marketplace:detail", args=[other.name])).content.decode()


def test_a_copy_button_counts_an_install_once_a_day_with_csrf(cast, monkeypatch):
    server = make_server("weather")
    url = reverse("marketplace:install", args=[server.name])
    strict = Client(enforce_csrf_checks=True)
    page = strict.get(reverse("marketplace:detail", args=[server.name])).content.decode()
    token = re.findall(r'data-csrf-token="([^"]+)"', page)[0]
    assert f'data-install-url="{url}"' in page
    assert strict.post(url, {"via": "cursor"}).status_code == 403  # no token: refused
    assert not Install.objects.exists()

    first = strict.post(url, {"via": "cursor"}, HTTP_X_CSRFTOKEN=token)
    assert first.status_code == 200 and first.json() == {"counted": True}
    assert strict.post(url, {"via": "vscode"}, HTTP_X_CSRFTOKEN=token).json() == {"counted": False}
    install = Install.objects.get()
    assert install.via == "cursor" and install.visitor == curation.visitor_hash("ip:127.0.0.1")

    # Signed in: the user, not the address, is the visitor.
    alice = Client()
    alice.force_login(cast.alice)
    assert alice.post(url, {"via": "windsurf"}).json() == {"counted": True}
    assert Install.objects.filter(visitor=curation.visitor_hash(f"user:{cast.alice.pk}")).exists()

    assert alice.post(url, {"via": "workspace"}).status_code == 400  # counted where it happens
    assert alice.post(url, {}).status_code == 400
    assert alice.get(url).status_code == 405
    missing = reverse("marketplace:install", args=["no.such/server"])
    assert alice.post(missing, {"via": "cursor"}).status_code == 404

    monkeypatch.setattr(curation, "INSTALLS_PER_HOUR", 1)
    other = make_server("maps")
    limited = alice.post(reverse("marketplace:install", args=[other.name]), {"via": "cursor"})
    assert limited.status_code == 429 and "try again later" in limited.json()["error"]
    assert not Install.objects.filter(server=other).exists()
