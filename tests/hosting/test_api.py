"""REST API for hosted servers: the catalog, the plan's usage, instances and their logs.

The cast (tests/conftest.py): in "acme", alice (Owner), bob (Admin), carol (Member); dave
owns "globex" and is an outsider to acme. Deploys run the real bridge as a subprocess
(tests/hosting/conftest.py). SECRET is a credential no response may ever contain.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from drf_spectacular.drainage import reset_generator_stats
from rest_framework.test import APIClient

from apps.accounts.services import api_key_create
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.hosting.models import Instance
from apps.hosting.services import MASK
from apps.rbac.roles import Role
from tests.api import bearer
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "api-secret-never-shown-31337"


def url(name: str, slug: str = "acme", **kwargs) -> str:
    return reverse(f"api:{name}", kwargs={"slug": slug, **kwargs})


def instance_url(name: str, instance: Instance, slug: str = "acme") -> str:
    return url(f"hosting-instance-{name}", slug, pk=instance.pk)


def actions(instance: Instance) -> list[tuple[str, str | None]]:
    events = AuditEvent.objects.filter(target_type="instance", target_id=str(instance.pk)).order_by("seq")
    return [(event.action, event.actor.email if event.actor else None) for event in events]


def assert_no_secret(response) -> None:
    body = response.content.decode()
    assert SECRET not in body
    assert '"env"' not in body and "env_encrypted" not in body


@pytest.fixture
def acme(cast, notes):
    """Instances of acme, made directly (no process): carol's request, bob's running one."""
    request = Instance.objects.create(
        workspace=cast.acme, image=notes, status=Instance.Status.REQUESTED, created_by=cast.carol
    )
    running = Instance.objects.create(
        workspace=cast.acme, image=notes, status=Instance.Status.RUNNING, created_by=cast.bob, approved_by=cast.bob
    )
    return {"request": request, "running": running}


def endpoints(ids: dict, slug: str = "acme") -> list[tuple[str, str, dict]]:
    """Every hosting endpoint and method, with a body that would work for an Owner."""
    request, running = ids["request"], ids["running"]
    return [
        ("get", url("hosting-catalog", slug), {}),
        ("get", url("hosting-usage", slug), {}),
        ("get", url("hosting-instance-list", slug), {}),
        ("post", url("hosting-instance-list", slug), {"image": "notes"}),
        ("get", instance_url("detail", running, slug), {}),
        ("get", instance_url("logs", running, slug), {}),
        ("post", instance_url("approve", request, slug), {}),
        ("post", instance_url("reject", request, slug), {}),
        ("post", instance_url("terminate", running, slug), {}),
    ]


def snapshot() -> tuple:
    """Everything a refused call must leave alone."""
    return (
        sorted(Instance.objects.values_list("pk", "status", "approved_by", "env_encrypted")),
        AuditEvent.objects.count(),
    )


# --- Deploying, requesting and deciding ---------------------------------------------------


def test_an_owner_deploys_the_notes_server_and_an_admin_terminates_it(cast, notes, client_for, process_runtime):
    alice = client_for(cast.alice)

    response = alice.post(url("hosting-instance-list"), {"image": "notes"}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    instance = Instance.objects.get(pk=body["id"])
    assert body == {
        "id": instance.pk,
        "image": "notes",
        "profile": "small",
        "egress": "none",
        "tool_prefix": f"notes-{instance.pk}_",
        "status": "running",
        "healthy": True,
        "error": "",
        "server_slug": f"h-notes-{instance.pk}",
        "env_names": [],
        "created_by": "alice@example.com",
        "approved_by": "alice@example.com",
        "created_at": body["created_at"],
        "started_at": body["started_at"],
        "stopped_at": None,
        "console_url": f"/ws/w/acme/instances/{instance.pk}/console/",
    }
    assert body["started_at"] is not None
    assert process_runtime.alive(instance.runtime_id)
    assert alice.get(url("hosting-usage")).json() == {"used": 1, "limit": 3}
    assert alice.get(instance_url("detail", instance)).json()["status"] == "running"

    stopped = client_for(cast.bob).post(instance_url("terminate", instance))

    assert stopped.status_code == 202
    assert (stopped.json()["status"], stopped.json()["healthy"]) == ("stopped", False)
    assert stopped.json()["stopped_at"] is not None
    assert not process_runtime.alive(instance.runtime_id)
    assert actions(instance) == [
        (Action.INSTANCE_DEPLOYED, "alice@example.com"),
        (Action.INSTANCE_TERMINATED, "bob@example.com"),
    ]
    # Twice is once.
    again = client_for(cast.bob).post(instance_url("terminate", instance))
    assert (again.status_code, again.json()["status"]) == (202, "stopped")
    assert len(actions(instance)) == 2


def test_a_profile_may_be_chosen_and_must_be_one_of_the_plans(cast, notes, client_for):
    alice = client_for(cast.alice)
    refused = alice.post(url("hosting-instance-list"), {"image": "notes", "profile": "huge"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("profile: ")
    assert not Instance.objects.exists()


def test_egress_is_none_unless_asked_and_the_audit_row_says_which(cast, notes, client_for):
    alice = client_for(cast.alice)
    closed = alice.post(url("hosting-instance-list"), {"image": "notes"}, format="json").json()
    opened = alice.post(url("hosting-instance-list"), {"image": "notes", "egress": "open"}, format="json").json()
    assert (closed["egress"], opened["egress"]) == ("none", "open")
    assert opened["tool_prefix"] == f"notes-{opened['id']}_"
    deployed = AuditEvent.objects.filter(action="instance.deployed", target_id=str(opened["id"])).get()
    assert deployed.metadata["egress"] == "open"
    refused = alice.post(url("hosting-instance-list"), {"image": "notes", "egress": "everywhere"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"].startswith("egress: ")


def test_a_members_request_waits_then_an_admin_approves_it_and_it_runs(cast, keyed, client_for):
    carol = client_for(cast.carol)

    asked = carol.post(
        url("hosting-instance-list"), {"image": "keyed", "env": {"NOTES_API_KEY": SECRET}}, format="json"
    )

    assert asked.status_code == 201, asked.json()
    assert_no_secret(asked)
    body = asked.json()
    assert (body["status"], body["created_by"], body["approved_by"]) == ("requested", "carol@example.com", None)
    assert body["env_names"] == ["NOTES_API_KEY"]
    assert carol.get(url("hosting-usage")).json() == {"used": 0, "limit": 3}  # a request takes no place
    instance = Instance.objects.get(pk=body["id"])

    approved = client_for(cast.bob).post(instance_url("approve", instance))

    assert approved.status_code == 202
    assert_no_secret(approved)
    assert (approved.json()["status"], approved.json()["approved_by"]) == ("running", "bob@example.com")
    assert approved.json()["error"] == ""
    assert carol.get(instance_url("detail", instance)).json()["status"] == "running"  # she watches hers
    assert actions(instance) == [
        (Action.INSTANCE_REQUESTED, "carol@example.com"),
        (Action.INSTANCE_APPROVED, "bob@example.com"),
    ]
    refused = client_for(cast.bob).post(instance_url("approve", instance))
    assert refused.status_code == 400
    assert "not requested" in refused.json()["error"]
    client_for(cast.alice).post(instance_url("terminate", instance))


def test_an_admin_rejects_a_request_and_its_credentials_are_forgotten(cast, keyed, client_for):
    carol = client_for(cast.carol)
    asked = carol.post(
        url("hosting-instance-list"), {"image": "keyed", "env": {"NOTES_API_KEY": SECRET}}, format="json"
    )
    instance = Instance.objects.get(pk=asked.json()["id"])

    rejected = client_for(cast.alice).post(instance_url("reject", instance))

    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["env_names"]) == ("rejected", [])
    assert Instance.objects.get(pk=instance.pk).env_encrypted == ""
    assert actions(instance) == [
        (Action.INSTANCE_REQUESTED, "carol@example.com"),
        (Action.INSTANCE_REJECTED, "alice@example.com"),
    ]
    for decision in ("approve", "reject"):
        refused = client_for(cast.alice).post(instance_url(decision, instance))
        assert refused.status_code == 400
        assert refused.json() == {"error": f"Instance #{instance.pk} is rejected, not requested."}


# --- Refusals that say what to fix ---------------------------------------------------------


def test_a_missing_required_credential_is_named(cast, keyed, client_for):
    alice = client_for(cast.alice)
    for env in ({}, {"NOTES_API_KEY": "  "}):
        response = alice.post(url("hosting-instance-list"), {"image": "keyed", "env": env}, format="json")
        assert response.status_code == 400
        assert response.json()["error"] == "env: keyed needs NOTES_API_KEY: give a value for each."
        assert list(response.json()["fields"]) == ["env"]
    unknown = alice.post(
        url("hosting-instance-list"),
        {"image": "keyed", "env": {"NOTES_API_KEY": "k", "LD_PRELOAD": "x"}},
        format="json",
    )
    assert unknown.status_code == 400
    assert "takes no LD_PRELOAD" in unknown.json()["error"]
    assert not Instance.objects.exists()


def test_an_unknown_image_is_refused_naming_the_field(cast, notes, client_for):
    alice = client_for(cast.alice)
    unknown = alice.post(url("hosting-instance-list"), {"image": "no-such-image"}, format="json")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": "image: The catalog has no image “no-such-image”: GET hosting/catalog/ lists them.",
        "fields": {"image": ["The catalog has no image “no-such-image”: GET hosting/catalog/ lists them."]},
    }
    missing = alice.post(url("hosting-instance-list"), {}, format="json")
    assert (missing.status_code, list(missing.json()["fields"])) == (400, ["image"])
    assert not Instance.objects.exists()


def test_the_plan_limit_refuses_a_deploy_but_not_a_request(cast, notes, client_for):
    for status in (Instance.Status.PENDING, Instance.Status.STARTING, Instance.Status.RUNNING):
        Instance.objects.create(workspace=cast.acme, image=notes, status=status)
    alice = client_for(cast.alice)
    assert alice.get(url("hosting-usage")).json() == {"used": 3, "limit": 3}

    refused = alice.post(url("hosting-instance-list"), {"image": "notes"}, format="json")

    assert refused.status_code == 400
    assert refused.json() == {
        "error": "The Team plan runs at most 3 hosted instances per workspace and acme has 3: terminate one first."
    }
    assert Instance.objects.count() == 3
    asked = client_for(cast.carol).post(url("hosting-instance-list"), {"image": "notes"}, format="json")
    assert (asked.status_code, asked.json()["status"]) == (201, "requested")
    approve = alice.post(instance_url("approve", Instance.objects.get(pk=asked.json()["id"])))
    assert approve.status_code == 400 and "Team plan runs at most 3" in approve.json()["error"]


def test_log_lines_must_be_between_1_and_200(cast, acme, client_for):
    bob = client_for(cast.bob)
    logs = instance_url("logs", acme["running"])
    for lines in ("0", "201", "-1", "many"):
        response = bob.get(logs, {"lines": lines})
        assert response.status_code == 400, lines
        assert response.json()["error"].startswith("lines: ")
    for lines in ("1", "200"):
        assert bob.get(logs, {"lines": lines}).json() == {"lines": [], "cursor": 0}  # not started: nothing yet
    assert bob.get(logs).status_code == 200


# --- Credentials never come back ----------------------------------------------------------


def test_the_credential_never_appears_in_any_response(cast, keyed, client_for, process_runtime):
    alice, carol = client_for(cast.alice), client_for(cast.carol)
    deployed = alice.post(
        url("hosting-instance-list"), {"image": "keyed", "env": {"NOTES_API_KEY": SECRET}}, format="json"
    )
    assert deployed.status_code == 201
    assert (deployed.json()["status"], deployed.json()["env_names"]) == ("running", ["NOTES_API_KEY"])
    instance = Instance.objects.get(pk=deployed.json()["id"])
    asked = carol.post(
        url("hosting-instance-list"), {"image": "keyed", "env": {"NOTES_API_KEY": SECRET}}, format="json"
    )
    request = Instance.objects.get(pk=asked.json()["id"])
    # As if the server printed its key: the API's logs mask it.
    with open(process_runtime._log_path(instance.runtime_id), "a") as log:
        log.write(f"using key {SECRET}\n")

    logs = alice.get(instance_url("logs", instance), {"lines": 200})
    assert logs.status_code == 200
    assert logs.json()["lines"][-1] == f"using key {MASK}"
    assert logs.json()["cursor"] > 0

    responses = [
        deployed,
        asked,
        logs,
        alice.get(url("hosting-instance-list")),
        alice.get(instance_url("detail", instance)),
        alice.get(instance_url("detail", request)),
        carol.get(url("hosting-instance-list")),
        carol.get(instance_url("detail", request)),
        carol.get(instance_url("logs", request)),
        alice.get(url("hosting-catalog")),
        alice.post(instance_url("terminate", instance)),
    ]
    for response in responses:
        assert response.status_code in (200, 201, 202), response.request["PATH_INFO"]
        assert_no_secret(response)


# --- Who sees and does what ----------------------------------------------------------------


def test_anonymous_callers_get_401(cast, acme):
    for method, path, body in endpoints(acme):
        response = getattr(APIClient(), method)(path, body, format="json")
        assert response.status_code == 401, (method, path)


def test_an_outsider_with_an_api_key_gets_404_on_everything_and_changes_nothing(cast, acme):
    _, raw = api_key_create(user=cast.dave, name="script")
    dave = bearer(raw)
    before = snapshot()
    for method, path, body in endpoints(acme):
        response = getattr(dave, method)(path, body, format="json")
        assert (response.status_code, response.json()) == (404, {"error": "Not found."}), (method, path)
    assert snapshot() == before
    # His own workspace answers; acme's instances are missing there too.
    assert dave.get(url("hosting-catalog", "globex")).status_code == 200
    assert dave.get(url("hosting-instance-list", "globex")).json()["results"] == []
    for name in ("detail", "logs"):
        assert dave.get(instance_url(name, acme["running"], "globex")).status_code == 404
    for name in ("approve", "reject", "terminate"):
        assert dave.post(instance_url(name, acme["request"], "globex")).status_code == 404
    assert snapshot() == before


def test_a_member_cannot_decide_or_terminate_and_sees_only_her_own(cast, acme, notes, client_for):
    erin = UserFactory(email="erin@example.com")
    MembershipFactory(workspace=cast.acme, user=erin, role=Role.MEMBER)
    erins = Instance.objects.create(workspace=cast.acme, image=notes, status=Instance.Status.REQUESTED, created_by=erin)
    carol = client_for(cast.carol)
    before = snapshot()

    for name in ("approve", "reject", "terminate"):
        for instance in (acme["request"], acme["running"], erins):  # her own request too
            response = carol.post(instance_url(name, instance))
            assert response.status_code == 403, (name, instance)
            assert response.json() == {"error": "Your role in this workspace does not allow this (servers.manage)."}
    for name in ("detail", "logs"):
        for instance in (erins, acme["running"]):
            response = carol.get(instance_url(name, instance))
            assert (response.status_code, response.json()) == (404, {"error": "Not found."}), (name, instance)
        assert carol.get(instance_url(name, acme["request"])).status_code == 200
    listed = carol.get(url("hosting-instance-list")).json()["results"]
    assert [i["id"] for i in listed] == [acme["request"].pk]
    assert snapshot() == before

    # Admins see every one, newest first.
    everything = client_for(cast.bob).get(url("hosting-instance-list")).json()["results"]
    assert [i["id"] for i in everything] == [erins.pk, acme["running"].pk, acme["request"].pk]


def test_every_member_reads_the_catalog(cast, notes, keyed, client_for):
    response = client_for(cast.carol).get(url("hosting-catalog"))
    assert response.status_code == 200
    by_slug = {image["slug"]: image for image in response.json()}
    assert by_slug["keyed"] == {
        "slug": "keyed",
        "name": "Keyed notes",
        "image": "local/process",
        "verified": True,
        "default_profile": "small",
        "egress": "none",
        "required_env_vars": [
            {"key": "NOTES_API_KEY", "label": "API key", "type": "password", "help": "", "required": True}
        ],
        "expected_tools": [],
    }
    assert by_slug["notes"]["expected_tools"] == ["add_note", "list_notes", "search_notes"]
    assert "mcp_command" not in by_slug["notes"]


def test_the_instance_list_does_not_grow_queries_with_rows(cast, acme, notes, client_for):
    bob = client_for(cast.bob)
    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert bob.get(url("hosting-instance-list")).status_code == 200
        counts.append(len(queries))
        for _ in range(3):
            Instance.objects.create(workspace=cast.acme, image=notes, created_by=cast.carol, approved_by=cast.bob)
    assert counts[0] == counts[1]


# --- The schema -----------------------------------------------------------------------------


def test_the_schema_lists_the_hosting_endpoints_without_warnings(db, tmp_path):
    schema = APIClient().get("/api/v1/schema/?format=json").json()
    assert {
        "/api/v1/workspaces/{slug}/hosting/catalog/",
        "/api/v1/workspaces/{slug}/hosting/usage/",
        "/api/v1/workspaces/{slug}/hosting/instances/",
        "/api/v1/workspaces/{slug}/hosting/instances/{id}/",
        "/api/v1/workspaces/{slug}/hosting/instances/{id}/approve/",
        "/api/v1/workspaces/{slug}/hosting/instances/{id}/reject/",
        "/api/v1/workspaces/{slug}/hosting/instances/{id}/terminate/",
        "/api/v1/workspaces/{slug}/hosting/instances/{id}/logs/",
    } <= set(schema["paths"])
    instance = schema["components"]["schemas"]["Instance"]["properties"]
    assert "env_names" in instance and "env" not in instance
    reset_generator_stats()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
