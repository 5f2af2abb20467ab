"""REST API for the gateway: upstream servers, allowlists, the policy and tool pins.

The cast (tests/conftest.py): in "acme", alice (Owner), bob (Admin), carol (Member); dave
owns "globex" and is an outsider to acme. Upstream headers carry SECRET, which no
response may ever contain.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.services import api_key_create
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.gateway import tasks
from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
from apps.gateway.services import allowlist_set, pin_observe, server_add
from apps.workspaces.models import Enforcement, Membership, Workspace
from tests.api import bearer
from tests.factories import MembershipFactory
from tests.gateway.upstream import _free_port

SECRET = "sk-live-never-shown-0123456789"  # a sentinel that must never appear in a response
HEADERS = {"Authorization": f"Bearer {SECRET}", "X-Team": "blue"}


def url(name: str, slug: str = "acme", **kwargs) -> str:
    return reverse(f"api:{name}", kwargs={"slug": slug, **kwargs})


def dead_url() -> str:
    """An upstream that refuses connections at once: approving or checking it is quick."""
    return f"http://127.0.0.1:{_free_port()}/mcp"


def events(workspace, action: Action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(workspace=workspace, action=action).order_by("seq"))


def assert_no_secret(response) -> None:
    body = response.content.decode()
    assert SECRET not in body
    assert '"headers"' not in body


@pytest.fixture
def acme(cast, django_capture_on_commit_callbacks):
    """Real objects inside acme, so a refusal cannot come from a missing one."""
    with django_capture_on_commit_callbacks(execute=True):  # the approval's task, as after a commit
        server = server_add(access=cast.access(cast.alice), slug="crm", url=dead_url(), headers=HEADERS)
    server.refresh_from_db()
    request = server_add(access=cast.access(cast.carol), slug="wiki", url=dead_url(), headers=HEADERS)
    pin = ToolPin.objects.create(server=server, tool_name="lookup", fingerprint="f1", definition={"name": "lookup"})
    pin_observe(server_id=server.pk, tool_name="lookup", definition={"name": "lookup", "v": 2}, fingerprint="f2")
    pin.refresh_from_db()
    pin_observe(server_id=server.pk, tool_name="export", definition={"name": "export"}, fingerprint="e1")
    ToolPin.objects.create(server=server, tool_name="search", fingerprint="s1", definition={"name": "search"})
    allowlist_set(access=cast.access(cast.alice), member=cast.carol, rules=["crm:search"])
    return {
        "server": server,
        "request": request,
        "pin": pin,
        "new_pin": ToolPin.objects.get(server=server, tool_name="export"),
        "member": Membership.objects.get(workspace=cast.acme, user=cast.carol),
    }


@pytest.fixture
def globex(cast, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        server = server_add(access=cast.access(cast.dave, cast.globex), slug="erp", url=dead_url(), headers=HEADERS)
    ToolPin.objects.create(server=server, tool_name="t", fingerprint="", definition={})
    pin_observe(server_id=server.pk, tool_name="t", definition={"name": "t"}, fingerprint="t1")
    return {
        "server": server,
        "pin": ToolPin.objects.get(server=server),
        "member": Membership.objects.get(workspace=cast.globex, user=cast.dave),
    }


def endpoints(ids: dict, slug: str = "acme") -> list[tuple[str, str, dict]]:
    def at(name: str, **kwargs) -> str:
        return url(name, slug, **kwargs)

    return [
        ("get", at("gateway-server-list"), {}),
        ("post", at("gateway-server-list"), {"slug": "new", "url": "https://mcp.example.com/mcp"}),
        *object_endpoints(ids, slug),
        ("get", at("gateway-allowlist-list"), {}),
        ("get", at("gateway-policy"), {}),
        ("patch", at("gateway-policy"), {"enforcement": "enforce"}),
        ("get", at("gateway-pin-list"), {}),
    ]


def object_endpoints(ids: dict, slug: str = "acme") -> list[tuple[str, str, dict]]:
    """The endpoints that name one object by id."""
    server, pin, member = ids["server"].pk, ids["pin"].pk, ids["member"].pk

    def at(name: str, **kwargs) -> str:
        return url(name, slug, **kwargs)

    return [
        ("get", at("gateway-server-detail", pk=server), {}),
        ("patch", at("gateway-server-detail", pk=server), {"url": "https://elsewhere.example.com/mcp"}),
        ("delete", at("gateway-server-detail", pk=server), {}),
        ("post", at("gateway-server-approve", pk=server), {}),
        ("post", at("gateway-server-reject", pk=server), {}),
        ("post", at("gateway-server-enable", pk=server), {}),
        ("post", at("gateway-server-disable", pk=server), {}),
        ("post", at("gateway-server-health-check", pk=server), {}),
        ("get", at("gateway-allowlist-detail", pk=member), {}),
        ("put", at("gateway-allowlist-detail", pk=member), {"rules": ["crm:*"]}),
        ("post", at("gateway-pin-approve", pk=pin), {}),
        ("post", at("gateway-pin-reject", pk=pin), {}),
    ]


def snapshot(workspace: Workspace) -> tuple:
    """Everything a refused call must leave alone."""
    workspace.refresh_from_db()
    return (
        sorted(UpstreamServer.objects.filter(workspace=workspace).values_list("slug", "url", "enabled", "status")),
        sorted(ToolPin.objects.filter(server__workspace=workspace).values_list("tool_name", "fingerprint")),
        sorted(AllowRule.objects.filter(workspace=workspace).values_list("user_id", "server_slug", "tool")),
        (workspace.enforcement, workspace.deny_by_default, workspace.rate_limit_per_minute),
        AuditEvent.objects.filter(workspace=workspace).count(),
    )


# --- Nobody outside gets in ---------------------------------------------------------------


def test_anonymous_callers_get_401(cast, acme, client_for):
    for method, path, body in endpoints(acme):
        response = getattr(client_for(), method)(path, body, format="json")
        assert response.status_code == 401, (method, path)
        assert response.json() == {"error": "Authentication credentials were not provided."}


def test_an_outsider_gets_404_on_everything_and_changes_nothing(cast, acme, client_for):
    dave = client_for(cast.dave)
    before = snapshot(cast.acme)
    for method, path, body in endpoints(acme):
        response = getattr(dave, method)(path, body, format="json")
        assert (response.status_code, response.json()) == (404, {"error": "Not found."}), (method, path)
    assert snapshot(cast.acme) == before


def test_a_member_of_one_workspace_sees_nothing_of_another(cast, acme, globex, client_for):
    """Alice owns acme: globex's objects are missing to her, by globex's URLs or by acme's."""
    alice = client_for(cast.alice)
    before = snapshot(cast.globex)
    for method, path, body in [*endpoints(globex, "globex"), *object_endpoints(globex, "acme")]:
        response = getattr(alice, method)(path, body, format="json")
        assert (response.status_code, response.json()) == (404, {"error": "Not found."}), (method, path)
    assert snapshot(cast.globex) == before
    assert "erp" not in [s["slug"] for s in alice.get(url("gateway-server-list")).json()["results"]]
    assert globex["pin"].pk not in [p["id"] for p in alice.get(url("gateway-pin-list")).json()["results"]]
    emails = [a["email"] for a in alice.get(url("gateway-allowlist-list")).json()["results"]]
    assert "dave@example.com" not in emails


def test_a_member_gets_403_with_the_reason_and_changes_nothing(cast, acme, client_for):
    carol = client_for(cast.carol)
    before = snapshot(cast.acme)
    open_to_members = {("get", url("gateway-server-list")), ("post", url("gateway-server-list"))}
    for method, path, body in endpoints(acme):
        if (method, path) in open_to_members:
            continue
        response = getattr(carol, method)(path, body, format="json")
        assert response.status_code == 403, (method, path)
        capability = "allowlists.manage" if "/servers/" not in path else "servers.manage"
        assert response.json() == {"error": f"Your role in this workspace does not allow this ({capability})."}
    assert snapshot(cast.acme) == before


def test_an_api_key_acts_with_its_owners_roles(cast, acme):
    _, bobs = api_key_create(user=cast.bob, name="ci")
    _, carols = api_key_create(user=cast.carol, name="ci")
    _, daves = api_key_create(user=cast.dave, name="ci")
    assert bearer(bobs).get(url("gateway-policy")).status_code == 200
    assert bearer(carols).get(url("gateway-policy")).status_code == 403
    assert bearer(daves).get(url("gateway-policy")).status_code == 404

    response = bearer(bobs).post(url("gateway-server-disable", pk=acme["server"].pk))
    assert response.status_code == 200
    (event,) = events(cast.acme, Action.SERVER_DISABLED)
    assert event.actor == cast.bob


# --- Upstream servers -----------------------------------------------------------------------


def test_admins_list_every_server_and_members_only_their_requests(cast, acme, client_for):
    everything = client_for(cast.bob).get(url("gateway-server-list"))
    assert everything.status_code == 200
    assert sorted(s["slug"] for s in everything.json()["results"]) == ["crm", "wiki"]
    assert_no_secret(everything)

    mine = client_for(cast.carol).get(url("gateway-server-list"))
    assert mine.status_code == 200
    ((wiki,),) = [mine.json()["results"]]
    assert (wiki["slug"], wiki["status"], wiki["requested_by"]) == ("wiki", "requested", "carol@example.com")
    assert_no_secret(mine)


def test_the_lists_do_not_grow_queries_with_rows(cast, acme, client_for):
    bob = client_for(cast.bob)
    paths = [url("gateway-server-list"), url("gateway-pin-list"), url("gateway-allowlist-list")]
    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            for path in paths:
                assert bob.get(path).status_code == 200
        counts.append(len(queries))
        for n in range(3):
            server = server_add(access=cast.access(cast.carol), slug=f"more-{len(counts)}-{n}", url=dead_url())
            ToolPin.objects.create(server=server, tool_name="t", fingerprint="x", definition={}, approved_by=cast.bob)
            MembershipFactory(workspace=cast.acme)
    assert counts[0] == counts[1]


def test_an_admin_adds_a_server_approved_with_headers_never_returned(
    cast, client_for, django_capture_on_commit_callbacks
):
    body = {"slug": "docs", "url": dead_url(), "prefix": "docs_", "headers": HEADERS, "timeout_seconds": 20}
    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = client_for(cast.bob).post(url("gateway-server-list"), body, format="json")
        assert response.status_code == 201, response.json()
        assert_no_secret(response)
        created = response.json()
        # Its approval is queued (the upstream is asked by a task, after the commit).
        assert (created["status"], created["checking"], created["check_kind"], created["check_state"]) == (
            "requested",
            True,
            "approve",
            "queued",
        )
        assert (created["prefix"], created["timeout_seconds"], created["check_requested_by"]) == (
            "docs_",
            20,
            "bob@example.com",
        )
        assert created["header_names"] == ["Authorization", "X-Team"]
    assert len(queued) == 1
    approved = client_for(cast.bob).get(url("gateway-server-detail", pk=created["id"])).json()
    assert (approved["status"], approved["checking"], approved["check_state"]) == ("approved", False, "done")
    assert approved["health_ok"] is False  # nothing listens there: approved without pins
    server = UpstreamServer.objects.get(workspace=cast.acme, slug="docs")
    assert server.get_headers() == HEADERS
    (added,) = events(cast.acme, Action.SERVER_ADDED)
    assert (added.actor, added.target_repr) == (cast.bob, "docs")
    assert SECRET not in str(added.metadata)  # the audit writer masks anything about headers
    (approved,) = events(cast.acme, Action.SERVER_APPROVED)
    assert (approved.actor, approved.metadata) == (cast.bob, {"tools_pinned": 0, "reachable": False})


def test_a_members_add_is_a_request_that_waits(cast, client_for):
    body = {"slug": "notes", "url": dead_url(), "headers": HEADERS}
    response = client_for(cast.carol).post(url("gateway-server-list"), body, format="json")
    assert response.status_code == 201, response.json()
    assert_no_secret(response)
    assert (response.json()["status"], response.json()["approved_by"]) == ("requested", None)
    (requested,) = events(cast.acme, Action.SERVER_REQUESTED)
    assert (requested.actor, requested.target_repr) == (cast.carol, "notes")
    assert not events(cast.acme, Action.SERVER_ADDED) and not events(cast.acme, Action.SERVER_APPROVED)


def test_credentials_in_a_url_are_refused_without_being_echoed(cast, client_for):
    response = client_for(cast.bob).post(
        url("gateway-server-list"), {"slug": "leaky", "url": f"https://mcp.example.com/mcp?api_key={SECRET}"}
    )
    assert response.status_code == 400
    assert SECRET not in response.content.decode()
    assert "url" in response.json()["fields"] and "api_key=…" in response.json()["error"]
    assert not UpstreamServer.objects.filter(slug="leaky").exists()


def test_a_malformed_header_is_refused_without_being_echoed(cast, client_for):
    body = {"slug": "bad", "url": dead_url(), "headers": {f"Bearer {SECRET}": "x"}}
    response = client_for(cast.bob).post(url("gateway-server-list"), body, format="json")
    assert response.status_code == 400
    assert SECRET not in response.content.decode()
    assert response.json()["error"].startswith("headers: Header 1:")
    twice = {"slug": "bad", "url": dead_url(), "headers": {"X-Key": "a", "x-key": "b"}}
    response = client_for(cast.bob).post(url("gateway-server-list"), twice, format="json")
    assert (response.status_code, response.json()["fields"]["headers"]) == (
        400,
        ["Header 2: the header x-key is given twice."],
    )


def test_a_taken_slug_says_so(cast, acme, client_for):
    response = client_for(cast.bob).post(url("gateway-server-list"), {"slug": "crm", "url": dead_url()})
    assert response.status_code == 400
    assert response.json()["error"] == "slug: acme already has a server called 'crm'."


def test_server_detail_for_admins_and_for_the_member_who_asked(cast, acme, client_for):
    response = client_for(cast.bob).get(url("gateway-server-detail", pk=acme["server"].pk))
    assert response.status_code == 200
    assert (response.json()["slug"], response.json()["header_names"]) == ("crm", ["Authorization", "X-Team"])
    assert_no_secret(response)
    own = client_for(cast.carol).get(url("gateway-server-detail", pk=acme["request"].pk))
    assert (own.status_code, own.json()["slug"]) == (200, "wiki")
    assert_no_secret(own)
    assert client_for(cast.carol).get(url("gateway-server-detail", pk=acme["server"].pk)).status_code == 403


def test_approving_a_request_is_queued_then_pins_its_tools(
    cast, client_for, upstream, django_capture_on_commit_callbacks
):
    request = server_add(access=cast.access(cast.carol), slug="fix", url=upstream.url)
    path = url("gateway-server-approve", pk=request.pk)
    assert client_for(cast.carol).post(path).status_code == 403

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client_for(cast.bob).post(path)
        double_click = client_for(cast.bob).post(path)
    assert response.status_code == 202, response.json()
    accepted = response.json()
    assert (accepted["status"], accepted["checking"], accepted["check_kind"], accepted["check_state"]) == (
        "requested",
        True,
        "approve",
        "queued",
    )
    assert accepted["check_requested_at"] and accepted["check_requested_by"] == "bob@example.com"
    assert (double_click.status_code, double_click.json()["check_requested_at"]) == (
        202,
        accepted["check_requested_at"],
    )
    assert len(queued) == 1  # one task, however often it is asked for
    assert not ToolPin.objects.filter(server=request).exists() and not events(cast.acme, Action.SERVER_APPROVED)

    queued[0]()  # the worker runs the task
    done = client_for(cast.bob).get(url("gateway-server-detail", pk=request.pk)).json()
    assert (done["status"], done["approved_by"], done["checking"], done["check_state"]) == (
        "approved",
        "bob@example.com",
        False,
        "done",
    )
    assert (done["health_ok"], done["health_detail"], done["check_error"]) == (True, "4 tools", "")
    assert done["check_started_at"] <= done["check_finished_at"]
    assert ToolPin.objects.filter(server=request).count() == 4
    (event,) = events(cast.acme, Action.SERVER_APPROVED)
    assert (event.actor, event.metadata) == (cast.bob, {"tools_pinned": 4, "reachable": True})

    again = client_for(cast.bob).post(path)
    assert again.status_code == 400
    assert again.json() == {"error": "Server 'fix' is already approved; approve changed tools one by one."}
    assert len(events(cast.acme, Action.SERVER_APPROVED)) == 1


def test_rejecting_a_request_removes_it_on_the_record(cast, acme, client_for):
    path = url("gateway-server-reject", pk=acme["request"].pk)
    assert client_for(cast.bob).post(path).status_code == 204
    assert not UpstreamServer.objects.filter(pk=acme["request"].pk).exists()
    (event,) = events(cast.acme, Action.SERVER_REMOVED)
    assert (event.actor, event.target_repr) == (cast.bob, "wiki")

    approved = client_for(cast.bob).post(url("gateway-server-reject", pk=acme["server"].pk))
    assert approved.status_code == 400
    assert approved.json() == {"error": "Server 'crm' is not a pending request; remove it instead."}
    assert UpstreamServer.objects.filter(pk=acme["server"].pk).exists()


def test_disabling_and_enabling_a_server(cast, acme, client_for):
    bob = client_for(cast.bob)
    disabled = bob.post(url("gateway-server-disable", pk=acme["server"].pk))
    assert (disabled.status_code, disabled.json()["enabled"]) == (200, False)
    assert_no_secret(disabled)
    enabled = bob.post(url("gateway-server-enable", pk=acme["server"].pk))
    assert (enabled.status_code, enabled.json()["enabled"]) == (200, True)
    (off,) = events(cast.acme, Action.SERVER_DISABLED)
    (on,) = events(cast.acme, Action.SERVER_UPDATED)
    assert (off.actor, off.metadata, on.actor, on.metadata) == (
        cast.bob,
        {"enabled": False},
        cast.bob,
        {"enabled": True},
    )


def test_removing_a_server(cast, acme, client_for):
    assert client_for(cast.bob).delete(url("gateway-server-detail", pk=acme["server"].pk)).status_code == 204
    assert not UpstreamServer.objects.filter(pk=acme["server"].pk).exists()
    (event,) = events(cast.acme, Action.SERVER_REMOVED)
    assert (event.actor, event.target_repr) == (cast.bob, "crm")


def test_updating_a_server_changes_only_what_is_sent(cast, acme, client_for):
    server = acme["server"]
    old_url = server.url
    path = url("gateway-server-detail", pk=server.pk)
    response = client_for(cast.bob).patch(path, {"max_concurrency": 5}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["url"], response.json()["max_concurrency"]) == (old_url, 5)
    assert_no_secret(response)
    (event,) = events(cast.acme, Action.SERVER_UPDATED)
    assert (event.actor, event.metadata) == (cast.bob, {"changed": {"max_concurrency": [None, 5]}})
    server.refresh_from_db()
    assert server.get_headers() == HEADERS  # untouched

    leaky = client_for(cast.bob).patch(path, {"url": f"https://x.example.com/?token={SECRET}"}, format="json")
    assert leaky.status_code == 400
    assert SECRET not in leaky.content.decode()
    server.refresh_from_db()
    assert server.url == old_url


def test_checking_a_server_is_queued_then_recorded(cast, acme, client_for, django_capture_on_commit_callbacks):
    server = acme["server"]
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client_for(cast.bob).post(url("gateway-server-health-check", pk=server.pk))
    assert response.status_code == 202, response.json()
    assert (response.json()["checking"], response.json()["check_kind"]) == (True, "health")
    assert_no_secret(response)
    assert len(queued) == 1  # the task, sent once the request's transaction commits
    assert not events(cast.acme, Action.HEALTH_CHECKED)

    queued[0]()  # the worker runs the task
    tasks.server_check_run(server.pk)  # delivered twice: the second finds nothing queued
    after = client_for(cast.bob).get(url("gateway-server-detail", pk=server.pk)).json()
    assert (after["checking"], after["check_state"]) == (False, "done")
    assert after["health_ok"] is False and "unreachable" in after["health_detail"]
    (event,) = events(cast.acme, Action.HEALTH_CHECKED)
    assert (event.actor, event.target_repr, event.metadata["ok"]) == (cast.bob, "crm", False)


# --- Allowlists -------------------------------------------------------------------------------


def test_admins_read_every_members_allowlist(cast, acme, client_for):
    response = client_for(cast.bob).get(url("gateway-allowlist-list"))
    assert response.status_code == 200
    assert sorted((a["email"], a["role"], a["rules"]) for a in response.json()["results"]) == [
        ("alice@example.com", "owner", []),
        ("bob@example.com", "admin", []),
        ("carol@example.com", "member", ["crm:search"]),
    ]
    one = client_for(cast.bob).get(url("gateway-allowlist-detail", pk=acme["member"].pk))
    assert one.json() == {
        "id": acme["member"].pk,
        "email": "carol@example.com",
        "role": "member",
        "rules": ["crm:search"],
    }


def test_replacing_an_allowlist(cast, acme, client_for):
    path = url("gateway-allowlist-detail", pk=acme["member"].pk)
    response = client_for(cast.bob).put(path, {"rules": ["crm:lookup", "wiki:*", "crm:lookup"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["rules"] == ["crm:lookup", "wiki:*"]
    (_, event) = events(cast.acme, Action.ALLOWLIST_CHANGED)  # the first is the fixture's
    assert (event.actor, event.target_repr) == (cast.bob, "carol@example.com")
    assert event.metadata == {"before": ["crm:search"], "after": ["crm:lookup", "wiki:*"]}

    assert response.json()["warnings"] == []

    bad = client_for(cast.bob).put(path, {"rules": ["no-colon"]}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"error": "Rules are written server:tool or server:* (got 'no-colon')."}
    unknown = client_for(cast.bob).put(path, {"rules": ["crm:drop_tables"]}, format="json")
    assert unknown.status_code == 400 and "offers no tool 'drop_tables'" in unknown.json()["error"]
    unchecked = client_for(cast.bob).put(path, {"rules": ["wiki:page"]}, format="json")
    assert unchecked.status_code == 200
    assert (unchecked.json()["rules"], len(unchecked.json()["warnings"])) == (["wiki:page"], 1)
    emptied = client_for(cast.bob).put(path, {"rules": []}, format="json")
    assert (emptied.status_code, emptied.json()["rules"]) == (200, [])
    assert not AllowRule.objects.filter(workspace=cast.acme, user=cast.carol).exists()


# --- The enforcement policy ---------------------------------------------------------------


def test_reading_and_changing_the_policy(cast, client_for):
    bob = client_for(cast.bob)
    assert bob.get(url("gateway-policy")).json() == {
        "enforcement": "off",
        "deny_by_default": cast.acme.deny_by_default,
        "rate_limit_per_minute": cast.acme.rate_limit_per_minute,
    }
    body = {"enforcement": "enforce", "deny_by_default": True, "rate_limit_per_minute": 42}
    response = bob.patch(url("gateway-policy"), body, format="json")
    assert (response.status_code, response.json()) == (200, body)
    acme = Workspace.objects.get(pk=cast.acme.pk)
    assert (acme.enforcement, acme.deny_by_default, acme.rate_limit_per_minute) == (Enforcement.ENFORCE, True, 42)
    (event,) = events(cast.acme, Action.ENFORCEMENT_CHANGED)
    assert event.actor == cast.bob
    assert event.metadata["changes"]["enforcement"] == ["off", "enforce"]
    assert event.metadata["changes"]["rate_limit_per_minute"][1] == 42


def test_a_bad_policy_value_changes_nothing(cast, client_for):
    response = client_for(cast.bob).patch(
        url("gateway-policy"), {"enforcement": "strict", "rate_limit_per_minute": 5}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == 'enforcement: "strict" is not a valid choice.'
    assert Workspace.objects.get(pk=cast.acme.pk).enforcement == Enforcement.OFF
    assert not events(cast.acme, Action.ENFORCEMENT_CHANGED)


# --- Tool pins --------------------------------------------------------------------------------


def test_pins_are_listed_with_their_status(cast, acme, client_for):
    bob = client_for(cast.bob)
    response = bob.get(url("gateway-pin-list"))
    assert response.status_code == 200
    assert sorted((p["server"], p["tool_name"], p["status"]) for p in response.json()["results"]) == [
        ("crm", "export", "new"),
        ("crm", "lookup", "pending_change"),
        ("crm", "search", "approved"),
    ]
    waiting = bob.get(url("gateway-pin-list"), {"status": "new"}).json()["results"]
    assert [(p["tool_name"], p["pending_definition"]) for p in waiting] == [("export", {"name": "export"})]
    assert bob.get(url("gateway-pin-list"), {"server": "wiki"}).json()["results"] == []
    bad = bob.get(url("gateway-pin-list"), {"status": "maybe"})
    assert bad.status_code == 400 and "status" in bad.json()["fields"]


def test_approving_a_pins_pending_definition(cast, acme, client_for):
    path = url("gateway-pin-approve", pk=acme["pin"].pk)
    response = client_for(cast.bob).post(path)
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["fingerprint"]) == ("approved", "f2")
    assert response.json()["approved_by"] == "bob@example.com"
    (event,) = events(cast.acme, Action.TOOL_REAPPROVED)
    assert (event.actor, event.metadata["tool"], event.metadata["previous"]) == (cast.bob, "lookup", "f1")

    again = client_for(cast.bob).post(path)
    assert again.json() == {"error": "That tool has no pending change to approve."}


def test_rejecting_a_pins_pending_definition(cast, acme, client_for):
    path = url("gateway-pin-reject", pk=acme["pin"].pk)
    response = client_for(cast.bob).post(path)
    assert response.status_code == 200, response.json()
    rejected = response.json()
    assert (rejected["status"], rejected["fingerprint"], rejected["pending_fingerprint"]) == ("rejected", "f1", "f2")
    assert rejected["rejected_by"] == "bob@example.com"
    (event,) = events(cast.acme, Action.TOOL_PIN_REJECTED)
    assert (event.actor, event.metadata["tool"], event.metadata["fingerprint"]) == (cast.bob, "lookup", "f2")
    listed = client_for(cast.bob).get(url("gateway-pin-list"), {"status": "rejected"}).json()["results"]
    assert [p["tool_name"] for p in listed] == ["lookup"]

    again = client_for(cast.bob).post(path)
    assert again.status_code == 400 and "was rejected" in again.json()["error"]
    late = client_for(cast.bob).post(url("gateway-pin-approve", pk=acme["pin"].pk))
    assert late.status_code == 400
    assert len(events(cast.acme, Action.TOOL_PIN_REJECTED)) == 1 and not events(cast.acme, Action.TOOL_REAPPROVED)
