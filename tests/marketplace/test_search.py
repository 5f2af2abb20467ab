"""Search over the index: the words in names, descriptions, tools and READMEs; the client and
category filters with their counts; on PostgreSQL the stored vector, its GIN index and typo
tolerance. The entries are in the registry's current item shape (as in the 2025-12-18
snapshot), indexed by the real indexer; categories come from an awesome-list file in its
enhansome shape, merged by the real merge."""

from __future__ import annotations

import copy
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.marketplace import search
from apps.marketplace.configs import CLIENTS
from apps.marketplace.models import Repository, Server
from apps.marketplace.search import Search
from apps.marketplace.services import awesome_merge, registry_index
from apps.marketplace.services.indexing import search_vectors_refresh
from tests.marketplace.registry_server import OFFICIAL

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's full-text search")

NPM = {
    "registryType": "npm",
    "registryBaseUrl": "https://registry.npmjs.org",
    "identifier": "@acme/weather-forecast",
    "version": "1.2.0",
    "runtimeHint": "npx",
    "transport": {"type": "stdio"},
    "environmentVariables": [{"name": "WEATHER_API_KEY", "description": "Your API key", "isSecret": True}],
}
REMOTE = {"type": "streamable-http", "url": "https://mcp.tickets.example.com/mcp"}
# An mcpb bundle: a package no client config can start (configs._package_launch).
BUNDLE = {
    "registryType": "mcpb",
    "identifier": "https://example.com/bundle.mcpb",
    "fileSha256": "0" * 64,
    "transport": {"type": "stdio"},
}


def item(name: str, *, description: str = "", packages=(), remotes=(), repository: str = "", version="1.0.0"):
    """One registry item, as the official API serves it."""
    server = {
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
        "name": name,
        "description": description,
        "version": version,
        "repository": {"url": repository, "source": "github"} if repository else {},
        "packages": [copy.deepcopy(p) for p in packages],
        "remotes": [copy.deepcopy(r) for r in remotes],
    }
    when = "2025-12-01T10:00:00Z"
    meta = {"status": "active", "publishedAt": when, "updatedAt": when, "isLatest": True}
    return {"server": server, "_meta": {OFFICIAL: meta}}


def index(tmp_path, items: list[dict]) -> None:
    path = tmp_path / f"entries-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(items))
    assert registry_index(file=path).status == "done"


def awesome(tmp_path, sections: dict[str, list[tuple[str, str]]]) -> None:
    """Merge an awesome list of ``{category title: [(owner, repo), …]}``."""
    document = {
        "items": [
            {
                "title": title,
                "items": [
                    {"title": repo, "description": f"{repo} server", "repo_info": {"owner": owner, "repo": repo}}
                    for owner, repo in repos
                ],
            }
            for title, repos in sections.items()
        ]
    }
    path = tmp_path / "awesome.json"
    path.write_text(json.dumps(document))
    awesome_merge(path=path)


def names(query: Search) -> list[str]:
    return [server.name for server in search.search(query)]


def found(query: Search) -> list[str]:
    """The names matched, in name order (for filters, where the order is the score's)."""
    return sorted(names(query))


@pytest.fixture
def catalog(tmp_path):
    index(
        tmp_path,
        [
            item(
                "io.github.acme/weather-forecast",
                description="Forecasts for any city.",
                packages=[NPM],
                repository="https://github.com/acme/weather-forecast",
            ),
            item("com.example/tickets", description="Open and close support tickets.", remotes=[REMOTE]),
            item("com.example/bundle-only", description="A desktop bundle.", packages=[BUNDLE]),
        ],
    )
    awesome(
        tmp_path,
        {
            "🗄️ Databases": [("acme", "weather-forecast"), ("someone", "pg-explorer")],
            "🛠️ Developer Tools": [("someone", "pg-explorer")],
        },
    )


def test_the_clients_that_can_install_a_server_are_those_its_configs_serve(catalog):
    facets = dict(Server.objects.values_list("name", "facets"))
    for name in ("io.github.acme/weather-forecast", "com.example/tickets"):
        assert all(f" client:{client} " in facets[name] for client in CLIENTS), facets[name]
    assert "client:" not in facets["com.example/bundle-only"]  # nothing a client can start
    assert "client:" not in facets["io.github.someone/pg-explorer"]  # only the awesome list knows it
    assert found(Search(client="cursor")) == ["com.example/tickets", "io.github.acme/weather-forecast"]
    assert names(Search(client="vscode", remote=True)) == ["com.example/tickets"]
    counts = search.facet_counts(Search())
    assert counts["client:claude-desktop"] == 2 and counts["transport:stdio"] == 2


def test_categories_filter_and_count_and_survive_reindexing(catalog, tmp_path):
    assert Server.objects.get(name="io.github.acme/weather-forecast").categories == ["Databases"]
    assert found(Search.from_params({"category": "Databases"})) == [
        "io.github.acme/weather-forecast",
        "io.github.someone/pg-explorer",
    ]
    assert names(Search.from_params({"category": "developer-tools"})) == ["io.github.someone/pg-explorer"]
    assert Search.from_params({"category": "Underwater Basket Weaving"}).category == ""
    counts = search.facet_counts(Search(category="databases"))
    assert (counts["category:databases"], counts["category:developer-tools"]) == (2, 1)
    assert counts["package:npm"] == 1  # the category kept: only the weather server is npm
    # A new version rewrites the facets from its server.json: the categories stay.
    index(
        tmp_path,
        [
            item(
                "io.github.acme/weather-forecast",
                description="Forecasts, now hourly.",
                packages=[NPM],
                repository="https://github.com/acme/weather-forecast",
                version="1.1.0",
            )
        ],
    )
    weather = Server.objects.get(name="io.github.acme/weather-forecast")
    assert weather.version == "1.1.0" and " category:databases " in weather.facets and " package:npm " in weather.facets


def test_tools_and_the_readme_are_searched(catalog):
    tickets = Server.objects.get(name="com.example/tickets")
    tickets.tools = [{"name": "escalate_incident", "description": "Page whoever is on call."}]
    tickets.save(update_fields=["tools"])
    Repository.objects.create(key="acme/weather-forecast", readme="# Weather\n\nWorks offline in Zanzibar too.")
    search_vectors_refresh(server_ids=[tickets.pk, Server.objects.get(name="io.github.acme/weather-forecast").pk])
    assert names(Search(q="escalate")) == ["com.example/tickets"]
    assert names(Search(q="zanzibar")) == ["io.github.acme/weather-forecast"]
    assert names(Search(q="zanzibar", client="vscode", remote=True)) == []
    assert names(Search(q="nothing-like-this")) == []


@postgres_only
def test_postgres_ranks_name_above_readme_and_forgives_typos(catalog):
    Repository.objects.create(key="acme/weather-forecast", readme="Pairs well with a tickets server.")
    search_vectors_refresh(server_ids=Server.objects.values_list("pk", flat=True))
    # Both match "tickets": one by its name and description, the other by its README only.
    assert names(Search(q="tickets")) == ["com.example/tickets", "io.github.acme/weather-forecast"]
    assert names(Search(q="wether"))[:1] == ["io.github.acme/weather-forecast"]  # a typo in the name


@postgres_only
def test_postgres_searches_the_stored_vector_through_its_gin_index(catalog):
    assert names(Search(q="city")) == ["io.github.acme/weather-forecast"]
    # The stored vector is what is searched: emptied, the description no longer matches.
    Server.objects.filter(name="io.github.acme/weather-forecast").update(search_vector=None)
    assert names(Search(q="city")) == []
    # The condition search uses can be answered from the two indexes alone (a few rows here:
    # the planner is told not to read the table instead).
    matching = search._matching(Server.objects.only("pk"), "forecasts").order_by()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = matching.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "marketplace_server_search_gin" in plan and "marketplace_server_name_trgm" in plan


def test_facet_counts_take_a_query_per_group_at_most(catalog, django_assert_max_num_queries):
    # (On PostgreSQL, one of them sets the typo threshold.)
    with django_assert_max_num_queries(len(search.FACET_GROUPS)):
        counts = search.facet_counts(Search(q="forecast", transport="stdio", category="databases"))
    assert counts["transport:stdio"] == 1 and counts["transport:streamable-http"] == 0
    with CaptureQueriesContext(connection) as unfiltered:
        search.facet_counts(Search())
    # PostgreSQL counts every group in one pass when no filter is chosen.
    assert len(unfiltered) == (1 if connection.vendor == "postgresql" else len(search.FACET_GROUPS))


def test_the_facets_keep_whole_words_within_their_column(catalog):
    from apps.marketplace.services.indexing import FACETS_LENGTH, with_categories

    many = [f"Category number {n} with a rather long name" for n in range(20)]
    facets = with_categories(Server.objects.get(name="com.example/tickets").facets, many)
    assert len(facets) <= FACETS_LENGTH and facets.startswith(" ") and facets.endswith(" ")
    assert " remote " in facets and all(
        word.startswith(("transport:", "remote", "client:", "category:c")) for word in facets.split()
    )
