"""The quality score, and the awesome list merged into the index without duplicates."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.marketplace.models import Publisher, Repository, Server
from apps.marketplace.scoring import ARCHIVED_CEILING, Facts, score
from apps.marketplace.services import awesome_entries, registry_index, scores, scores_refresh
from tests.marketplace.registry_server import DATA, SNAPSHOT, entries

NOW = datetime(2026, 11, 30, tzinfo=UTC)
AWESOME = DATA / "awesome-mcp-servers-with-stars-2026-06-15.json.gz"
README = """# Postgres MCP server

Read-only access to a PostgreSQL database.

## Tools

- `query`: run a read-only SQL query

## Configuration

Set `DATABASE_URL` to the database's connection string.
"""


def _facts(**changes) -> Facts:
    base = {
        "installable": True,
        "description": "Query a PostgreSQL database read-only, with schemas as resources.",
        "title": "Postgres",
        "in_registry": True,
        "deprecated": False,
        "archived": False,
        "stars": 300,
        "last_commit_at": NOW - timedelta(days=20),
        "variables": 1,
        "variables_described": 1,
        "variable_names": ("DATABASE_URL",),
        "license": "MIT",
        "readme": README,
        "installs_week": 0,
    }
    return Facts(**{**base, **changes})


def test_a_maintained_300_star_server_outranks_an_abandoned_3000_star_one():
    maintained = score(_facts(stars=300, last_commit_at=NOW - timedelta(days=20)), now=NOW)
    abandoned = score(_facts(stars=3000, last_commit_at=NOW - timedelta(days=3 * 365)), now=NOW)
    assert maintained.points > abandoned.points
    assert [r.factor for r in maintained.reasons] == [
        "Install config",
        "Description",
        "Official registry",
        "Maintenance",
        "Documentation",
        "Stars",
        "README",
        "Licence",
        "Installs",
        "Config scan",
    ]
    assert sum(r.max for r in maintained.reasons) == 110
    assert maintained.points == round(100 * sum(r.points for r in maintained.reasons) / 110)
    stars = next(r for r in abandoned.reasons if r.factor == "Stars")
    assert (stars.points, stars.max) == (15, 15) and "3,000 stars" in stars.why  # capped, and says so


def test_an_archived_server_is_never_above_c():
    combos = itertools.product([True, False], [0, 50, 10_000], [NOW, NOW - timedelta(days=800)], [True, False])
    for installable, stars, last_commit, in_registry in combos:
        result = score(
            _facts(
                archived=True, installable=installable, stars=stars, last_commit_at=last_commit, in_registry=in_registry
            ),
            now=NOW,
        )
        assert result.points <= ARCHIVED_CEILING and result.grade in "CDF", result
    best = score(_facts(stars=10_000, last_commit_at=NOW), now=NOW)
    assert best.grade == "A" and score(_facts(stars=10_000, last_commit_at=NOW, archived=True), now=NOW).grade == "C"


def test_unknowns_cost_points_and_penalties_say_why():
    unknown = score(_facts(stars=None, last_commit_at=None, license="", readme=""), now=NOW)
    assert {r.factor: r.why for r in unknown.reasons if r.points == 0} == {
        "Maintenance": "Last commit unknown.",
        "Stars": "Stars unknown.",
        "README": "No README.",
        "Licence": "No licence found.",
        "Installs": "0 installs this week.",
    }
    deprecated = score(_facts(deprecated=True), now=NOW)
    assert deprecated.reasons[-1].factor == "Deprecated" and deprecated.points < score(_facts(), now=NOW).points - 20
    nothing = score(
        _facts(
            installable=False,
            description="",
            in_registry=False,
            stars=None,
            last_commit_at=None,
            variables=2,
            variables_described=0,
            license="",
            readme="",
        ),
        now=NOW,
    )
    assert (nothing.points, nothing.grade) == (0, "F")


@pytest.mark.parametrize(
    ("changes", "points", "why"),
    [
        ({}, 10, "A README of 28 words with a Tools section, its variable DATABASE_URL."),
        ({"readme": ""}, 0, "No README."),
        (
            {"readme": "Ask `query` or `explain` for a plan.", "tool_names": ("query", "explain", "vacuum")},
            6,
            "A README of 7 words with 2 of its 3 tools named; not its variable DATABASE_URL.",
        ),
        (
            {"readme": "Three tools. Put OPENAI_DATABASE_URL in the env.", "tool_names": ("query", "explain")},
            4,
            "A README of 7 words with tools mentioned; not its variable DATABASE_URL.",
        ),
        (
            {"readme": "# Setup\nRun it.", "variable_names": ("A_KEY", "B_KEY")},
            4,
            "A README of 4 words with a configuration section; no word on its tools.",
        ),
        (
            {"readme": "# Postgres\nUse A_KEY.", "variable_names": ("A_KEY", "B_KEY", "C_KEY", "D_KEY", "E_KEY")},
            4,
            "A README of 4 words with 1 of its 5 variables (A_KEY); no word on its tools.",
        ),
        (
            {"readme": "## Available tools\nNone.", "variable_names": ()},
            10,
            "A README of 4 words with a Tools section, nothing to configure.",
        ),
        (
            {"readme": README.replace("DATABASE_URL", "PGHOST"), "variable_names": ("PGHOST", "PGUSER", "PGPASS", "X")},
            8,
            "A README of 28 words with a Tools section, 1 of its 4 variables (PGHOST).",
        ),
    ],
)
def test_the_readme_factor_says_exactly_what_it_found(changes, points, why):
    reason = next(r for r in score(_facts(**changes), now=NOW).reasons if r.factor == "README")
    assert (reason.points, reason.max, reason.why) == (points, 10, why)


@pytest.mark.parametrize(
    ("license", "points", "why"),
    [
        ("MIT", 5, "MIT, an OSI-approved licence."),
        ("Apache-2.0", 5, "Apache-2.0, an OSI-approved licence."),
        ("GPL-3.0", 5, "GPL-3.0, an OSI-approved licence."),
        ("NOASSERTION", 0, "A licence file GitHub could not identify."),
        ("CC-BY-4.0", 0, "CC-BY-4.0 is not an OSI-approved licence."),
        ("", 0, "No licence found."),
    ],
)
def test_the_licence_factor(license, points, why):
    reason = next(r for r in score(_facts(license=license), now=NOW).reasons if r.factor == "Licence")
    assert (reason.points, reason.why) == (points, why)


def test_installs_are_log_scaled_and_capped():
    def installs(count):
        reason = next(r for r in score(_facts(installs_week=count), now=NOW).reasons if r.factor == "Installs")
        return reason.points, reason.why

    assert installs(0) == (0, "0 installs this week.")
    assert installs(1) == (1, "1 install this week.")
    assert installs(9)[0] == 2 and installs(30)[0] == 4
    assert installs(100) == (5, "100 installs this week.") and installs(5000) == (5, "5,000 installs this week.")


@pytest.mark.django_db
def test_scores_read_each_readme_from_its_repository_in_one_query_per_chunk():
    publisher = Publisher.objects.create(namespace="io.github.acme")

    def servers(count, offset):
        created = Server.objects.bulk_create(
            [
                Server(
                    name=f"io.github.acme/s{offset + i}",
                    publisher=publisher,
                    repository_key=f"acme/r{(offset + i) % 4}",
                )
                for i in range(count)
            ]
        )
        return [server.pk for server in created]

    Repository.objects.bulk_create([Repository(key=f"acme/r{i}", readme=README if i else "") for i in range(4)])
    few, many = servers(3, 0), servers(40, 100)
    with CaptureQueriesContext(connection) as small:
        assert scores_refresh(server_ids=few, now=NOW) == 3
    with CaptureQueriesContext(connection) as large:
        assert scores_refresh(server_ids=many, now=NOW) == 40
    assert len(large) == len(small)
    reasons = {s.repository_key: s.score_reasons for s in Server.objects.filter(pk__in=few)}
    readme = {key: next(r for r in value if r["factor"] == "README") for key, value in reasons.items()}
    assert readme["acme/r0"]["why"] == "No README." and readme["acme/r1"]["points"] == 10


def test_the_awesome_list_reads_every_repository_once_with_its_categories():
    listed, categories = awesome_entries(entries(AWESOME))
    keys = [entry.key for entry in listed]
    assert len(keys) == len(set(keys)) > 2000
    assert sum(1 for entry in listed if entry.archived) >= 25
    assert all(categories[key] for key in keys)
    assert not any("Frameworks" in cats for cats in categories.values())
    assert all(not cat[0].isspace() and cat[0] != "🗄" for cats in categories.values() for cat in cats)


@pytest.mark.django_db(transaction=True)
def test_the_list_enriches_registry_servers_and_adds_the_rest_without_duplicates(tmp_path, client):
    path = tmp_path / "registry.json"
    path.write_bytes(SNAPSHOT.read_bytes())
    path = path.rename(tmp_path / "registry.json.gz")
    assert registry_index(file=path).status == "done"
    registry_keys = set(Server.objects.exclude(repository_key="").values_list("repository_key", flat=True))

    out = StringIO()
    call_command("index_awesome", "--file", str(AWESOME), stdout=out)
    listed, _ = awesome_entries(entries(AWESOME))
    both = registry_keys & {entry.key for entry in listed}
    assert both, "the two sources share repositories"
    assert f"{len(listed)} repositories: " in out.getvalue()
    # One server per repository the list names: a registry one enriched, or one of its own.
    from_list = Counter(Server.objects.filter(source="awesome").values_list("repository_key", flat=True))
    assert not set(from_list) & registry_keys and max(from_list.values()) == 1
    # (a registry server named io.github.<owner>/<repo> is that repository even without its URL)
    enriched = Server.objects.filter(source="registry", repository_key__in=both)
    assert enriched.exclude(stars=None).count() == enriched.count() and enriched.count() >= len(both)
    named = set(Server.objects.filter(source="registry").values_list("name", flat=True))
    own = {e.key for e in listed if e.key not in registry_keys and f"io.github.{e.owner.lower()}/{e.repo}" not in named}
    assert Server.objects.filter(source="awesome").count() == len(own)

    again = StringIO()
    before = Server.objects.count()
    call_command("index_awesome", "--file", str(AWESOME), stdout=again)
    assert Server.objects.count() == before and "0 servers added" in again.getvalue()

    # Every server is graded; archived ones stay at C or below; the page shows why.
    assert not Server.objects.filter(grade="").exists()
    assert not Server.objects.filter(archived=True, grade__in=["A", "B"]).exists()
    top = Server.objects.listed().order_by("-score").first()
    page = client.get(reverse("marketplace:detail", args=[top.name])).content.decode()
    assert f'>{top.grade}</span> <span class="muted">({top.score}/100)' in page
    for reason in top.score_reasons:
        assert reason["why"].replace("'", "&#x27;") in page
    ranked = client.get(reverse("marketplace:list"), {"sort": "score"}).content.decode()
    assert top.name in ranked


@pytest.mark.django_db(transaction=True)
def test_a_listed_only_server_that_reaches_the_registry_stays_one_server(tmp_path):
    listed, _ = awesome_entries(entries(AWESOME))
    entry = next(e for e in listed if e.stars)
    list_path = tmp_path / "awesome.json"
    list_path.write_text(
        json.dumps(
            {
                "items": [
                    {
                        "title": "Databases",
                        "items": [
                            {
                                "title": entry.key,
                                "description": "x",
                                "repo_info": {
                                    "owner": entry.owner,
                                    "repo": entry.repo,
                                    "stars": entry.stars,
                                    "archived": False,
                                    "last_commit": "2026-06-01T00:00:00Z",
                                },
                            }
                        ],
                    }
                ]
            }
        )
    )
    call_command("index_awesome", "--file", str(list_path), stdout=StringIO())
    assert Server.objects.get().source == "awesome"
    published = {
        "server": {
            "name": f"com.example/{entry.repo.lower()}",
            "version": "1.0.0",
            "description": "d",
            "repository": {"url": f"https://github.com/{entry.owner}/{entry.repo}"},
        }
    }
    registry_path = tmp_path / "registry.json"
    registry_path.write_text(json.dumps([published]))
    assert registry_index(file=registry_path).status == "done"
    server = Server.objects.get()
    assert (server.source, server.stars, server.categories) == ("registry", entry.stars, ["Databases"])


def test_the_config_scanners_findings_cost_points_by_severity():
    clean = score(_facts(), now=NOW)
    medium = score(_facts(findings=(("unpinned-package", "medium"),)), now=NOW)
    high = score(_facts(findings=(("plaintext-secret", "high"), ("unpinned-package", "medium"))), now=NOW)
    scans = [next(r for r in result.reasons if r.factor == "Config scan") for result in (clean, medium, high)]
    assert [(scan.points, scan.max) for scan in scans] == [(10, 10), (5, 10), (0, 10)]
    assert "plaintext-secret" in scans[2].why and "2 scanner findings" in scans[2].why
    assert clean.points > medium.points > high.points


def test_a_server_whose_remote_is_plain_http_is_scored_on_the_scanners_finding(db):
    document = {
        "name": "io.example/plain",
        "description": "A server reached over plain HTTP, which the scanner flags.",
        "version": "1.0.0",
        "remotes": [{"type": "streamable-http", "url": "http://mcp.example.com/mcp"}],
    }
    secure = {**document, "remotes": [{"type": "streamable-http", "url": "https://mcp.example.com/mcp"}]}
    server = Server(name="io.example/plain", description=document["description"])
    plain = next(r for r in score(scores._facts(server, document), now=NOW).reasons if r.factor == "Config scan")
    tls = next(r for r in score(scores._facts(server, secure), now=NOW).reasons if r.factor == "Config scan")
    assert plain.points < tls.points == 10
