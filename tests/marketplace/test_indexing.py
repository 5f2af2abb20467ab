"""Indexing the official MCP registry from its real published data (../shared/data/registry/),
served by a local registry that pages as the real one does."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.marketplace.models import IndexRun, Publisher, Server, ServerVersion
from apps.marketplace.registry import BadEntry, parse
from apps.marketplace.services import registry_index
from tests.marketplace.registry_server import LEGACY, OFFICIAL, SEED, SNAPSHOT, Registry, entries

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def current() -> list:
    return entries(SNAPSHOT)


def test_the_2025_12_18_snapshot_indexes_to_exactly_its_servers_and_versions(current):
    with Registry(current) as registry:
        run = registry_index(url=registry.url)
    assert (run.status, run.skipped, run.problems) == (IndexRun.Status.DONE, 0, [])
    assert Server.objects.count() == 1108
    assert ServerVersion.objects.count() == 2794
    assert run.seen == 2794 and run.pages == 28  # 27 full pages of 100, then 94
    assert Publisher.objects.count() == len({item["server"]["name"].split("/")[0] for item in current})
    # Each server is its latest version (the registry's isLatest), whatever order they came in.
    latest = {
        item["server"]["name"]: item["server"]["version"] for item in current if item["_meta"][OFFICIAL]["isLatest"]
    }
    assert dict(Server.objects.values_list("name", "version")) == latest


def test_a_full_last_page_is_followed_by_an_empty_one_and_the_run_ends(current):
    with Registry(current[:2700]) as registry:
        run = registry_index(url=registry.url)
    assert run.status == IndexRun.Status.DONE and run.pages == 28
    assert registry.requests[-1]["cursor"] and len(registry.requests) == 28
    assert ServerVersion.objects.count() == 2700


def test_indexing_again_writes_nothing_and_asks_only_for_what_changed(current):
    with Registry(current) as registry:
        first = registry_index(url=registry.url)
        again = registry_index(url=registry.url)
        assert "updated_since" not in registry.requests[0]
        assert registry.requests[-1]["updated_since"].startswith(f"{first.started_at:%Y-%m-%d}")
        forced = registry_index(url=registry.url, full=True)
    assert again.written == 0 and not again.full
    assert forced.full and forced.seen == 2794 and forced.written == 0  # unchanged: nothing rewritten


def test_deleted_and_deprecated_servers_leave_the_listing_at_the_next_run(current):
    with Registry(current) as registry:
        registry_index(url=registry.url)
        listed = Server.objects.listed().count()
        gone = [i for i in registry.items if i["_meta"][OFFICIAL]["isLatest"]][:2]
        for item, status in zip(gone, ("deleted", "deprecated"), strict=True):
            changed = copy.deepcopy(item)
            changed["_meta"][OFFICIAL].update(status=status, updatedAt="2099-01-01T00:00:00Z")
            registry.items = [changed if i is item else i for i in registry.items]
        run = registry_index(url=registry.url)
    assert run.seen == 2 and run.written == 2  # updated_since: only the two changed entries
    names = [item["server"]["name"] for item in gone]
    assert dict(Server.objects.filter(name__in=names).values_list("name", "status")) == {
        names[0]: "deleted",
        names[1]: "deprecated",
    }
    assert Server.objects.listed().count() == listed - 2


def test_an_interrupted_run_resumes_from_its_cursor(current):
    with Registry(current) as registry:
        registry.fail_pages = {5}
        failed = registry_index(url=registry.url)
        assert failed.status == IndexRun.Status.FAILED and "HTTP 500" in failed.error
        assert failed.pages == 5 and failed.cursor
        resumed = registry_index(url=registry.url)
        assert resumed.pk == failed.pk and resumed.status == IndexRun.Status.DONE
        assert registry.requests[6].get("cursor") == registry.requests[5].get("cursor")  # the failed page, again
    assert ServerVersion.objects.count() == 2794 and Server.objects.count() == 1108


def test_a_bad_entry_is_reported_and_skipped_and_the_page_is_kept(current):
    items = copy.deepcopy(current[:150])
    items[3] = "not an object"
    items[7]["server"]["name"] = "no-namespace"
    del items[9]["server"]["version"]
    items[11]["server"]["name"] = "ok/" + "x" * 300
    with Registry(items) as registry:
        run = registry_index(url=registry.url)
    assert run.status == IndexRun.Status.DONE and run.skipped == 4
    reasons = [problem["reason"] for problem in run.problems]
    assert "an entry is a JSON object, not str" in reasons
    assert "name 'no-namespace' is not namespace/name" in reasons
    assert any(reason.endswith(": no version") for reason in reasons)
    assert any("too long" in reason for reason in reasons)
    assert ServerVersion.objects.count() == 146


def test_a_registry_that_is_down_fails_the_run_with_the_reason():
    run = registry_index(url="http://127.0.0.1:9")  # nothing listens on the discard port
    assert run.status == IndexRun.Status.FAILED and "ConnectError" in run.error


def test_the_quirks_of_real_entries_are_kept(current):
    with Registry(current) as registry:
        registry_index(url=registry.url)
    no_repository = next(i["server"] for i in current if i["server"].get("repository") == {})
    assert Server.objects.get(name=no_repository["name"]).repository_url == ""
    latest_tag = next(
        i["server"] for i in current if any(p.get("version") == "latest" for p in i["server"].get("packages", []))
    )
    assert ServerVersion.objects.filter(server__name=latest_tag["name"], version=latest_tag["version"]).exists()
    secret_header = next(
        i["server"]
        for i in current
        if any(h.get("isSecret") for r in i["server"].get("remotes", []) for h in r.get("headers", []))
    )
    stored = ServerVersion.objects.get(server__name=secret_header["name"], version=secret_header["version"]).document
    assert stored["remotes"] == secret_header["remotes"]  # a header's declaration, never a value
    facets = Server.objects.filter(remote=True).values_list("transports", flat=True)
    assert any("streamable-http" in t for t in facets) and any("sse" in t for t in facets)
    assert any("oci" in types for types in Server.objects.values_list("package_types", flat=True))


def test_the_legacy_and_seed_files_index_through_the_command(tmp_path):
    out, err = StringIO(), StringIO()
    call_command("index_registry", "--file", str(LEGACY), stdout=out, stderr=err)
    legacy = entries(LEGACY)
    # 461 names in the file; four published an empty version and one a name with two slashes
    # (the registry accepted both then): those five are reported and skipped.
    valid = [i for i in legacy if i["version"] and i["name"].count("/") == 1]
    assert len({i["name"] for i in legacy}) == 461 and len(legacy) - len(valid) == 5
    assert f"{len(legacy)} entries" in out.getvalue() and "5 skipped" in out.getvalue()
    assert "Knapcode.SampleMcpServer/aot' is not namespace/name" in err.getvalue()
    assert Server.objects.count() == len({i["name"] for i in valid}) == 457
    assert ServerVersion.objects.count() == len({(i["name"], i["version"]) for i in valid})

    seed = entries(SEED)
    out, err = StringIO(), StringIO()
    call_command("index_registry", "--file", str(SEED), stdout=out, stderr=err)
    nameless = sum(1 for i in seed if not i["name"])
    assert nameless == 7 and f"{nameless} skipped" in out.getvalue()
    assert "skipped (no name): name '' is not namespace/name" in err.getvalue()
    magic = ServerVersion.objects.get(server__name="io.github.21st-dev/magic-mcp", version="0.0.1-seed").document
    assert magic["packages"][0]["registryType"] == "npm" and magic["packages"][0]["identifier"] == "@21st-dev/magic"
    assert magic["packages"][0]["environmentVariables"][0]["name"] == "API_KEY"


def test_the_command_says_what_failed_and_that_it_resumes(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("index_registry", "--file", str(broken))
    with pytest.raises(CommandError, match="No such file"):
        call_command("index_registry", "--file", str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"server": {"name": "a/b"}}, "a/b: no version"),
        ({"version_detail": {"version": "1"}, "name": ""}, "name '' is not namespace/name"),
        ({"server": "nope"}, "server: Input should be a valid dictionary"),
        ([], "an entry is a JSON object, not list"),
    ],
)
def test_parse_names_what_is_wrong(item, reason):
    with pytest.raises(BadEntry, match=reason.replace("(", r"\(")):
        parse(item)


def test_staff_see_the_runs_and_hide_a_server_in_admin(current, client):
    from tests.factories import UserFactory

    with Registry(current[:300]) as registry:
        run = registry_index(url=registry.url)
    staff = UserFactory(email="ops@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)
    assert client.get(f"/admin/marketplace/indexrun/{run.pk}/change/").status_code == 200
    server = Server.objects.listed().first()
    page = client.get(f"/admin/marketplace/server/{server.pk}/change/")
    assert page.status_code == 200 and server.version in page.content.decode()
    form = {"hidden": "on", "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"}  # the read-only inline
    saved = client.post(f"/admin/marketplace/server/{server.pk}/change/", form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert not Server.objects.listed().filter(pk=server.pk).exists()
    assert client.get("/admin/marketplace/server/add/").status_code == 403
