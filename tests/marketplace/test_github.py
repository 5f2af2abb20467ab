"""GitHub enrichment end to end: real registry entries and an awesome-list entry indexed,
then enriched from a local GitHub replaying recorded responses (``github_server.py``)."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.marketplace.models import Repository, Server
from apps.marketplace.services import awesome_merge, registry_index
from apps.marketplace.services.github import REFRESH_EVERY, RETRY_MISSING_AFTER, github_enrich, repositories_ensure
from tests.marketplace.github_server import GitHubReplay
from tests.marketplace.registry_server import DATA, OFFICIAL, SNAPSHOT, entries

pytestmark = pytest.mark.django_db

# The scores are computed as of this moment, whatever day the tests run.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
REPOSITORIES = {
    "neo4j-contrib/mcp-neo4j",  # four registry servers
    "github/github-mcp-server",  # a remote registry server
    "arjunkmrm/time",  # 404
    "waystation-ai/mcp",  # 502
}
LISTED_ONLY = "tinybirdco/mcp-tinybird"  # only in the awesome list, archived
FIELDS = ("stars", "last_commit_at", "archived", "license", "topics", "score", "grade", "score_reasons")


def _awesome_node(key: str) -> dict:
    document = json.loads(gzip.decompress((DATA / "awesome-mcp-servers-with-stars-2026-06-15.json.gz").read_bytes()))
    found = []

    def walk(node):
        if isinstance(node, dict):
            info = node.get("repo_info") or {}
            if f"{info.get('owner')}/{info.get('repo')}".lower() == key:
                found.append(node)
            for child in (node.get("items") or []) + (node.get("children") or []):
                walk(child)

    walk(document)
    return found[0]


@pytest.fixture
def indexed(tmp_path):
    """The registry's latest entries for ``REPOSITORIES`` and the list's entry for
    ``LISTED_ONLY``, indexed; their repositories due at ``NOW``."""
    chosen = [
        item
        for item in entries(SNAPSHOT)
        if item["_meta"][OFFICIAL]["isLatest"]
        and (item["server"].get("repository") or {}).get("url", "").lower().removeprefix("https://github.com/")
        in REPOSITORIES
    ]
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(chosen))
    assert registry_index(file=registry).status == "done"
    listed = tmp_path / "awesome.json"
    listed.write_text(json.dumps({"items": [{"title": "Databases", "items": [_awesome_node(LISTED_ONLY)]}]}))
    awesome_merge(path=listed)
    repositories_ensure()
    Repository.objects.update(next_fetch_at=NOW - timedelta(minutes=1))
    return listed


@pytest.fixture
def github(settings):
    with GitHubReplay() as replay:
        settings.MCPNEST_GITHUB_API_URL = replay.url
        settings.MCPNEST_GITHUB_TOKEN = ""
        yield replay


def _state() -> dict:
    return {server.name: {f: getattr(server, f) for f in FIELDS} for server in Server.objects.all()}


def _reasons(name: str) -> dict[str, dict]:
    return {reason["factor"]: reason for reason in Server.objects.get(name=name).score_reasons}


def test_enrichment_copies_github_onto_servers_and_scores_them_again(indexed, github):
    neo4j = Server.objects.filter(repository_key="neo4j-contrib/mcp-neo4j")
    assert neo4j.count() == 4 and set(neo4j.values_list("license", flat=True)) == {""}
    run = github_enrich(now=NOW)

    assert (run.due, run.changed, run.unchanged, run.missing, run.failed, run.postponed) == (5, 3, 0, 1, 1, 0)
    assert run.requests == 3 * 3 + 1 + 1 and run.servers == 6  # 4 neo4j, github, tinybird
    # Fields copied onto every server of a repository (the four servers of one monorepo).
    assert set(neo4j.values_list("stars", "archived", "license")) == {(1024, False, "MIT")}
    cypher = Server.objects.get(name="io.github.neo4j-contrib/mcp-neo4j-cypher")
    assert cypher.last_commit_at == datetime(2026, 11, 19, 16, 2, 55, tzinfo=UTC)  # the committer's date
    assert cypher.topics == ["mcp", "model-context-protocol", "neo4j", "cypher", "knowledge-graph"]
    # GitHub's answer is newer than the list's (80 stars, archived): it wins.
    tinybird = Server.objects.get(repository_key=LISTED_ONLY)
    assert (tinybird.stars, tinybird.archived, tinybird.license) == (81, True, "Apache-2.0")
    assert tinybird.score <= 69 and tinybird.grade in "CDF"

    # The reasons say what GitHub told us.
    reasons = _reasons(cypher.name)
    assert reasons["Stars"]["why"] == "1,024 stars on GitHub."
    assert reasons["Licence"] == {"factor": "Licence", "points": 5, "max": 5, "why": "MIT, an OSI-approved licence."}
    assert reasons["Maintenance"]["why"] == "Last commit 10 days ago."
    assert reasons["README"]["points"] == 8 and reasons["README"]["why"].endswith(
        "with a Tools section, 5 of its 9 variables (NEO4J_URI, NEO4J_USERNAME, NEO4J_PASSWORD and 2 more)."
    )
    memory = _reasons("io.github.neo4j-contrib/mcp-neo4j-memory")["README"]
    assert memory["points"] == 10 and "all 5 of its variables" in memory["why"]
    assert _reasons("io.github.github/github-mcp-server")["README"]["why"].startswith("A README of ")

    # The repository keeps the README, rendered with its links resolved, and its ETags.
    repository = Repository.objects.get(key="neo4j-contrib/mcp-neo4j")
    assert (repository.status, repository.error) == (Repository.Status.OK, "")
    assert repository.readme.startswith("# Neo4j MCP Clients & Servers")
    assert (
        '<img src="https://raw.githubusercontent.com/neo4j-contrib/mcp-neo4j/main/docs/images/mcp-neo4j.png"'
        in repository.readme_html
    )
    assert (
        'href="https://github.com/neo4j-contrib/mcp-neo4j/blob/main/servers/mcp-neo4j-cypher/README.md"'
        in repository.readme_html
    )
    assert repository.etag.startswith('W/"') and repository.commits_etag and repository.readme_etag
    assert (repository.fetched_at, repository.next_fetch_at) == (NOW, NOW + REFRESH_EVERY)

    missing = Repository.objects.get(key="arjunkmrm/time")
    assert (missing.status, missing.next_fetch_at) == (Repository.Status.MISSING, NOW + RETRY_MISSING_AFTER)
    assert set(Server.objects.filter(repository_key="arjunkmrm/time").values_list("stars", flat=True)) == {None}
    failed = Repository.objects.get(key="waystation-ai/mcp")
    assert failed.status == Repository.Status.FAILED
    assert failed.error == "GET /repos/waystation-ai/mcp: HTTP 502 Server Error"
    assert failed.next_fetch_at == NOW + timedelta(hours=1)

    # Asked as GitHub asks to be asked, without a token when none is configured.
    assert {r.headers.get("x-github-api-version") for r in github.requests} == {"2022-11-28"}
    assert not any("authorization" in r.headers for r in github.requests)
    commits = [r for r in github.requests if r.path.endswith("/commits")]
    assert {r.query for r in commits} == {"per_page=1"}


def test_a_second_run_is_conditional_and_writes_nothing_new(indexed, github):
    github_enrich(now=NOW)
    before = _state()
    html = dict(Repository.objects.values_list("key", "readme_html"))
    github.requests.clear()

    run = github_enrich(now=NOW + timedelta(days=2))  # due again: the three fetched, and the failed one

    ok = [r for r in github.requests if "waystation" not in r.path]
    assert len(ok) == 9 and all(r.headers.get("if-none-match") for r in ok)
    assert {r.status for r in ok} == {304}
    assert (run.changed, run.unchanged, run.failed, run.servers) == (0, 3, 1, 0)
    assert _state() == before
    assert dict(Repository.objects.values_list("key", "readme_html")) == html


def test_github_wins_over_an_older_awesome_list(indexed, github):
    github_enrich(now=NOW)
    awesome_merge(path=indexed)  # the list again: 80 stars, as of June
    assert Server.objects.get(repository_key=LISTED_ONLY).stars == 80

    run = github_enrich(keys=[LISTED_ONLY], now=NOW + timedelta(hours=1))
    assert (run.changed, run.unchanged, run.servers) == (0, 1, 1)  # GitHub: not modified; the server: rewritten
    assert Server.objects.get(repository_key=LISTED_ONLY).stars == 81


def test_a_spent_rate_limit_stops_the_batch_until_the_reset(indexed, github):
    reset = (timezone.now() + timedelta(minutes=30)).replace(microsecond=0)
    github.limit(3, reset=reset)  # enough for one repository's three calls

    run = github_enrich(now=NOW)

    # arjunkmrm/time (404, free), then github/github-mcp-server's three calls; the last one
    # said 0 remaining, so nothing more was sent.
    assert github.paths() == [
        "/repos/arjunkmrm/time",
        "/repos/github/github-mcp-server",
        "/repos/github/github-mcp-server/commits",
        "/repos/github/github-mcp-server/readme",
    ]
    assert run.rate_limited_until == reset and (run.changed, run.missing, run.postponed) == (1, 1, 3)
    postponed = Repository.objects.filter(key__in=["neo4j-contrib/mcp-neo4j", LISTED_ONLY, "waystation-ai/mcp"])
    assert set(postponed.values_list("next_fetch_at", "status")) == {(reset, Repository.Status.PENDING)}
    # A run before the reset finds nothing due, and asks GitHub nothing.
    assert github_enrich(now=NOW + timedelta(minutes=5)).due == 0 and len(github.requests) == 4


def test_a_secondary_rate_limit_is_honoured_with_its_retry_after(indexed, github):
    github.answer("/repos/github/github-mcp-server", "secondary-rate-limit", headers={"Retry-After": "300"})
    started = timezone.now()
    run = github_enrich(now=NOW)
    assert github.paths() == ["/repos/arjunkmrm/time", "/repos/github/github-mcp-server"]
    assert timedelta(seconds=299) <= run.rate_limited_until - started <= timedelta(seconds=302)
    limited = Repository.objects.get(key="github/github-mcp-server")
    assert (limited.status, limited.error, limited.next_fetch_at) == ("pending", "", run.rate_limited_until)
    assert run.postponed == 4 and run.failed == 0


def test_failures_back_off_and_a_repository_without_readme_has_none(indexed, github):
    github_enrich(now=NOW)
    later = NOW + timedelta(hours=2)
    github_enrich(keys=["waystation-ai/mcp"], now=later)
    failed = Repository.objects.get(key="waystation-ai/mcp")
    assert failed.next_fetch_at == later + timedelta(hours=2)  # twice the last wait

    github.answer(f"/repos/{LISTED_ONLY}/readme", "not-found")
    github.answer(f"/repos/{LISTED_ONLY}", "tinybirdco-mcp-tinybird", headers={"ETag": 'W/"changed"'})
    github_enrich(keys=[LISTED_ONLY], now=later)
    repository = Repository.objects.get(key=LISTED_ONLY)
    assert (repository.status, repository.readme, repository.readme_html) == ("ok", "", "")
    assert _reasons("io.github.tinybirdco/mcp-tinybird")["README"]["why"] == "No README."


def test_the_token_is_sent_as_bearer_and_never_stored_or_logged(indexed, github, settings, caplog):
    token = "ghp_" + "A1b2C3d4" * 4 + "Zz9y"
    settings.MCPNEST_GITHUB_TOKEN = token
    # A failing proxy that echoes the request's headers back in its error.
    github.answer("/repos/waystation-ai/mcp", "waystation-ai-mcp")
    github.overrides["/repos/waystation-ai/mcp"]["body"] = {"message": f"Bad gateway (Authorization: Bearer {token})"}
    with caplog.at_level(logging.DEBUG):
        run = github_enrich(now=NOW)
    assert run.failed == 1
    assert {r.headers.get("authorization") for r in github.requests} == {f"Bearer {token}"}
    assert token not in caplog.text and "GitHub waystation-ai/mcp" in caplog.text
    assert not Repository.objects.filter(error__contains=token[4:20]).exists()
    assert "[token]" in Repository.objects.get(key="waystation-ai/mcp").error


def test_the_command_enriches_the_repositories_asked_for(indexed, github):
    out = StringIO()
    call_command("index_github", "--repo", "Neo4j-Contrib/mcp-neo4j", "--repo", LISTED_ONLY, stdout=out)
    assert out.getvalue().startswith("2 repositories due: 2 changed, 0 unchanged, 0 missing, 0 failed; 5 servers")
    assert Repository.objects.filter(status="ok").count() == 2
    with pytest.raises(CommandError, match="not owner/repo"):
        call_command("index_github", "--repo", "not a repository", stdout=StringIO())


def test_a_refused_token_stops_the_run_without_blaming_the_repositories(indexed, github, settings):
    settings.MCPNEST_GITHUB_TOKEN = "ghp_expired"
    github.answer("/repos/arjunkmrm/time", "bad-credentials")
    with pytest.raises(CommandError, match="GitHub refused the token: GET /repos/arjunkmrm/time: 401 Bad credentials"):
        call_command("index_github", stdout=StringIO())
    assert len(github.requests) == 1
    assert set(Repository.objects.values_list("status", "error")) == {("pending", "")}


def test_an_empty_repository_has_its_last_push_as_last_commit(indexed, github):
    github.answer("/repos/github/github-mcp-server/commits", "empty-repository")
    github.answer("/repos/github/github-mcp-server", "github-github-mcp-server")
    github.overrides["/repos/github/github-mcp-server"]["body"]["pushed_at"] = "2026-11-28T09:00:00Z"
    run = github_enrich(keys=["github/github-mcp-server"], now=NOW)
    assert (run.changed, run.failed) == (1, 0)
    server = Server.objects.get(name="io.github.github/github-mcp-server")
    assert server.last_commit_at == datetime(2026, 11, 28, 9, tzinfo=UTC)
