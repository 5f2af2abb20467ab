"""The quality score, and the awesome list merged into the index without duplicates."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.marketplace.models import Server
from apps.marketplace.scoring import ARCHIVED_CEILING, Facts, score
from apps.marketplace.services import awesome_entries, registry_index
from tests.marketplace.registry_server import DATA, SNAPSHOT, entries

NOW = datetime(2026, 11, 30, tzinfo=UTC)
AWESOME = DATA / "awesome-mcp-servers-with-stars-2026-06-15.json.gz"


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
    ]
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
    unknown = score(_facts(stars=None, last_commit_at=None), now=NOW)
    assert {r.factor: r.why for r in unknown.reasons if r.points == 0} == {
        "Maintenance": "Last commit unknown.",
        "Stars": "Stars unknown.",
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
        ),
        now=NOW,
    )
    assert (nothing.points, nothing.grade) == (round(100 * 6 / 80) - 0, "F") or nothing.grade == "F"


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
