"""The Hosted tab: alice (Owner) deploys from the catalog and watches the instance start,
carol (Member) only requests and bob (Admin) decides, credentials never come back to a
browser, and nobody outside acme learns anything about its instances."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.gateway.models import UpstreamServer
from apps.hosting.models import AllowedImage, Instance
from apps.hosting.services import MASK, instance_deploy
from apps.rbac.roles import Role
from tests.factories import MembershipFactory, UserFactory
from tests.hosting.conftest import keyed, process_runtime  # noqa: F401 - fixtures

SECRET = "hosted-s3cr3t-7788"  # a credential: it must never come back to a browser
FORBIDDEN = "This page is for the workspace's Owners and Admins; you are a Member."


def _url(name: str, *args) -> str:
    return reverse(f"portal:{name}", args=["acme", *args])


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _text(response) -> str:
    return html.unescape(response.content.decode())


def _shown(body: str, outcome: str) -> bool:
    """Whether the instance page shows this outcome's block (the others are hidden)."""
    found = re.search(rf'<p class="[^"]*" data-outcome="{outcome}"( hidden)?>', body)
    assert found, outcome
    return found.group(1) is None


def _events(action: Action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(workspace__slug="acme", action=action).order_by("seq"))


def _state() -> list[tuple]:
    return sorted(Instance.objects.values_list("pk", "workspace__slug", "status", "env_encrypted", "approved_by"))


@pytest.fixture
def erin(cast) -> User:
    """Another Member of acme."""
    user = UserFactory(email="erin@example.com")
    MembershipFactory(workspace=cast.acme, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def requested(cast, notes) -> Instance:
    """carol's request for notes (nothing runs until it is approved)."""
    return instance_deploy(access=cast.access(cast.carol), image=notes, env={})


@pytest.fixture
def running_row(cast, notes) -> Instance:
    """An instance acme's page lists as running (a row only: no process behind it)."""
    return Instance.objects.create(
        workspace=cast.acme, image=notes, status=Instance.Status.RUNNING, healthy=True, created_by=cast.bob
    )


# --- The tab ------------------------------------------------------------------------


def test_the_tab_shows_usage_the_isolation_notice_and_the_catalog(cast, signed_in, notes, keyed, running_row):  # noqa: F811
    response = signed_in(cast.alice).get(_url("hosted"))
    assert response.status_code == 200
    body = _text(response)
    assert "1 of 3 running" in body
    assert 'id="not-isolated"' in body and "Not isolated." in body
    for image in (notes, keyed):
        card = re.search(rf'<article class="image-card" id="image-{image.slug}".*?</article>', body, re.S).group(0)
        assert image.name in card and f"<code>{image.slug}</code>" in card
        assert '<span class="badge verified">Verified</span>' in card
        assert "Small (0.25 vCPU, 256 MB)" in card  # its default profile
        assert f'action="{_url("hosted-deploy", image.slug)}"' in card
        assert ">Deploy</button>" in card
    keyed_card = body.split('id="image-keyed"')[1].split("</article>")[0]
    key_input = re.search(r'<input type="password" name="keyed-env_NOTES_API_KEY"[^>]*>', keyed_card).group(0)
    assert 'autocomplete="off"' in key_input and "required" in key_input
    assert 'aria-describedby="id_keyed-env_NOTES_API_KEY_helptext"' in key_input
    assert 'API key <span class="required">(required)</span>' in keyed_card
    # The instances table, with what an Owner may do to each.
    row = re.search(rf'<tr id="instance-{running_row.pk}">.*?</tr>', body, re.S).group(0)
    for cell in (running_row.server_slug, "Running", "healthy", "bob@example.com", "Small (0.25 vCPU, 256 MB)"):
        assert cell in row, cell
    assert _url("hosted-instance", running_row.pk) in row and _url("hosted-terminate", running_row.pk) in row


def test_the_tab_is_everyones_and_a_member_requests_rather_than_deploys(cast, signed_in, notes, running_row):
    url = _url("hosted")
    for user in (cast.alice, cast.bob, cast.carol):
        assert f'href="{url}">Hosted<' in signed_in(user).get(_url("workspace")).content.decode(), user.email
    body = _text(signed_in(cast.carol).get(url))
    assert ">Request</button>" in body and ">Deploy</button>" not in body
    assert "Your instances" in body and "You have not deployed or requested a hosted server." in body
    assert running_row.server_slug not in body  # bob's instance is not hers to see
    assert "1 of 3 running" in body  # the workspace's usage is


@override_settings(MCPNEST_HOSTING_RUNTIME="docker")
def test_the_notice_is_only_for_the_process_runtime(cast, signed_in):
    body = signed_in(cast.alice).get(_url("hosted")).content.decode()
    assert "not-isolated" not in body and "Not isolated" not in body


def test_the_page_costs_a_fixed_number_of_queries(cast, signed_in, notes, keyed, django_assert_max_num_queries):  # noqa: F811
    for n in range(6):
        Instance.objects.create(workspace=cast.acme, image=notes if n % 2 else keyed, created_by=cast.carol)
    client = signed_in(cast.alice)
    with django_assert_max_num_queries(12):
        page = client.get(_url("hosted"))
    assert len(page.context["page"].rows) == 6


# --- Deploying, requesting, deciding ----------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the deploy task runs once the request's transaction commits
def test_owner_deploys_notes_and_lands_on_its_running_instance(cast, signed_in, notes):
    alice = signed_in(cast.alice)
    response = alice.post(_url("hosted-deploy", "notes"), {"notes-profile": "medium"}, follow=True)

    instance = Instance.objects.get(workspace=cast.acme)
    assert (instance.status, instance.healthy, instance.profile) == (Instance.Status.RUNNING, True, "medium")
    assert response.redirect_chain == [(_url("hosted-instance", instance.pk), 302)]
    assert f"Instance #{instance.pk} (notes) deployed: running as {instance.server_slug}." in _messages(response)
    body = _text(response)
    assert _shown(body, "healthy") and not _shown(body, "starting") and not _shown(body, "failed")
    assert (
        f"tools are in the gateway's <code>tools/list</code> as <code>{instance.tool_prefix}</code><em>tool</em>"
        in body
    )
    assert 'role="log" aria-live="polite"' in body
    assert f'data-console="/ws/w/acme/instances/{instance.pk}/console/"' in body
    assert all(f in body for f in ('data-status="running"', 'data-healthy="true"', 'data-settled="false"'))
    assert response.context["logs"].lines  # the bridge's start-up lines, server-rendered
    assert _events(Action.INSTANCE_DEPLOYED)[0].actor == cast.alice
    assert UpstreamServer.objects.get(slug=instance.server_slug).is_live
    assert "1 of 3 running" in _text(alice.get(_url("hosted")))


@pytest.mark.django_db(transaction=True)
def test_terminate_asks_first_then_stops_it(cast, signed_in, notes, process_runtime):  # noqa: F811
    instance = instance_deploy(access=cast.access(cast.alice), image=notes, env={})
    assert instance.status == Instance.Status.RUNNING, instance.error
    bob = signed_in(cast.bob)
    page = _text(bob.get(_url("hosted-instance", instance.pk)))
    assert _url("hosted-terminate", instance.pk) in page

    confirm = bob.get(_url("hosted-terminate", instance.pk))
    assert confirm.status_code == 200
    assert f"Terminate instance #{instance.pk} (<code>notes</code>)?" in confirm.content.decode()
    assert f"Terminate {instance.server_slug}" in _text(confirm)
    unconfirmed = bob.post(_url("hosted-terminate", instance.pk))
    assert "Nothing was changed: this needs confirming." in _messages(unconfirmed)[0]
    assert Instance.objects.get(pk=instance.pk).status == Instance.Status.RUNNING

    done = bob.post(_url("hosted-terminate", instance.pk), {"confirm": "yes"}, follow=True)
    assert done.redirect_chain == [(_url("hosted") + "#instances", 302)]
    assert f"Instance #{instance.pk} (notes) terminated: its tools left the gateway." in _messages(done)
    instance.refresh_from_db()
    assert instance.status == Instance.Status.STOPPED
    assert not process_runtime.alive(instance.runtime_id)
    assert not UpstreamServer.objects.filter(slug=instance.server_slug).exists()
    assert _events(Action.INSTANCE_TERMINATED)[0].actor == cast.bob
    stopped_page = _text(bob.get(_url("hosted-instance", instance.pk)))
    assert _shown(stopped_page, "stopped") and _url("hosted-terminate", instance.pk) not in stopped_page
    assert "0 of 3 running" in _text(bob.get(_url("hosted")))


@pytest.mark.django_db(transaction=True)
def test_member_requests_and_admin_approves(cast, signed_in, keyed):  # noqa: F811
    carol = signed_in(cast.carol)
    response = carol.post(_url("hosted-deploy", "keyed"), {"keyed-profile": "small", "keyed-env_NOTES_API_KEY": SECRET})
    asked = Instance.objects.get(workspace=cast.acme)
    assert response.status_code == 302 and response["Location"] == _url("hosted") + "#instances"
    assert (asked.status, asked.created_by, asked.runtime_id) == (Instance.Status.REQUESTED, cast.carol, "")
    tab = carol.get(response["Location"])
    assert f"Keyed notes requested as instance #{asked.pk}; an Owner or Admin will review it." in _messages(tab)
    row = re.search(rf'<tr id="instance-{asked.pk}">.*?</tr>', _text(tab), re.S).group(0)
    assert "Requested" in row and "Approve" not in row and "Terminate" not in row
    mine = _text(carol.get(_url("hosted-instance", asked.pk)))
    assert _shown(mine, "requested") and "Approve and deploy" not in mine and SECRET not in mine

    assert "waiting for your approval" not in _text(tab)  # hers to wait for, not to decide

    bob = signed_in(cast.bob)
    waiting = _text(bob.get(_url("hosted")))
    assert f"Approve instance {asked.pk} (keyed)" in waiting
    # The Hosted tab counts the requests waiting for an Owner or Admin.
    assert re.search(r'>Hosted</a> <span class="badge waiting"[^>]*>1<span class="sr-only"> waiting', waiting)
    approved = bob.post(_url("hosted-approve", asked.pk), follow=True)
    asked.refresh_from_db()
    assert (asked.status, asked.approved_by) == (Instance.Status.RUNNING, cast.bob), asked.error
    assert approved.redirect_chain == [(_url("hosted-instance", asked.pk), 302)]
    assert f"Instance #{asked.pk} (keyed) approved: running as {asked.server_slug}." in _messages(approved)
    assert "Approved by</dt><dd>bob@example.com" in _text(approved)
    assert '>Hosted</a> <span class="badge waiting' not in _text(approved)
    assert _shown(_text(carol.get(_url("hosted-instance", asked.pk))), "healthy")  # she watches hers
    assert [e.actor for e in _events(Action.INSTANCE_APPROVED)] == [cast.bob]
    # Approving twice is refused, with the reason.
    again = bob.post(_url("hosted-approve", asked.pk), follow=True)
    assert f"Instance #{asked.pk} is running, not requested." in _messages(again)


def test_admin_rejects_a_request(cast, signed_in, requested):
    bob = signed_in(cast.bob)
    response = bob.post(_url("hosted-reject", requested.pk), follow=True)
    assert response.redirect_chain == [(_url("hosted") + "#instances", 302)]
    assert f"Request #{requested.pk} (notes) rejected; the credentials given with it were deleted." in _messages(
        response
    )
    requested.refresh_from_db()
    assert requested.status == Instance.Status.REJECTED
    assert _events(Action.INSTANCE_REJECTED)[0].actor == cast.bob
    row = re.search(rf'<tr id="instance-{requested.pk}">.*?</tr>', _text(response), re.S).group(0)
    assert "Rejected" in row and "Approve" not in row and "Terminate" not in row
    assert _shown(_text(signed_in(cast.carol).get(_url("hosted-instance", requested.pk))), "rejected")


def test_a_missing_required_credential_is_named_and_nothing_is_deployed(cast, signed_in, keyed):  # noqa: F811
    alice = signed_in(cast.alice)
    for value in ("", "   "):
        response = alice.post(
            _url("hosted-deploy", "keyed"), {"keyed-profile": "small", "keyed-env_NOTES_API_KEY": value}
        )
        assert response.status_code == 200
        body = _text(response)
        assert "keyed needs NOTES_API_KEY: give a value for each." in body
        assert re.search(r'<ul class="errorlist nonfield">\s*<li>keyed needs NOTES_API_KEY', body)
    assert not Instance.objects.exists()


def test_a_refused_form_never_sends_the_credential_back(cast, signed_in, keyed):  # noqa: F811
    alice = signed_in(cast.alice)
    response = alice.post(_url("hosted-deploy", "keyed"), {"keyed-profile": "huge", "keyed-env_NOTES_API_KEY": SECRET})
    assert response.status_code == 200
    assert "Select a valid choice." in _text(response)
    assert SECRET not in response.content.decode()
    key_input = re.search(r'<input type="password" name="keyed-env_NOTES_API_KEY"[^>]*>', response.content.decode())
    assert "value=" not in key_input.group(0)
    assert not Instance.objects.exists()


def test_the_plan_limit_is_explained_on_the_form(cast, signed_in, notes):
    for _ in range(3):
        Instance.objects.create(workspace=cast.acme, image=notes, status=Instance.Status.RUNNING, healthy=True)
    response = signed_in(cast.alice).post(_url("hosted-deploy", "notes"), {"notes-profile": "small"})
    assert response.status_code == 200
    body = _text(response)
    assert "The Team plan runs at most 3 hosted instances per workspace and acme has 3: terminate one first." in body
    assert "3 of 3 running" in body
    assert Instance.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_failed_deploy_shows_why_and_its_last_lines(cast, signed_in, keyed):  # noqa: F811
    keyed.required_env_vars = [{**keyed.required_env_vars[0], "required": False}]  # let it reach the runtime
    keyed.save()
    response = signed_in(cast.alice).post(_url("hosted-deploy", "keyed"), {"keyed-profile": "small"}, follow=True)
    instance = Instance.objects.get(workspace=cast.acme)
    assert instance.status == Instance.Status.FAILED
    assert any(m.startswith(f"Instance #{instance.pk} (keyed) deployed, but it failed: ") for m in _messages(response))
    body = _text(response)
    assert _shown(body, "failed") and not _shown(body, "healthy")
    failure = re.search(r'<div class="failure" data-console-error>.*?</div>', body, re.S).group(0)
    assert "NOTES_API_KEY is not set" in failure
    assert 'data-settled="true"' in body
    assert _url("hosted-terminate", instance.pk) in body  # cleaning up is still offered


# --- Who reaches what -----------------------------------------------------------------


def _hosted_urls(instance: Instance) -> list[tuple[str, dict]]:
    """Every hosted URL of acme, with a POST that would change something."""
    return [
        (_url("hosted"), {}),
        (_url("hosted-deploy", "notes"), {"notes-profile": "small"}),
        (_url("hosted-instance", instance.pk), {}),
        (_url("hosted-approve", instance.pk), {}),
        (_url("hosted-reject", instance.pk), {}),
        (_url("hosted-terminate", instance.pk), {"confirm": "yes"}),
    ]


def test_an_outsider_gets_404_for_every_hosted_url_and_method(cast, signed_in, requested):
    dave = signed_in(cast.dave)
    before, events = _state(), AuditEvent.objects.count()
    for url, data in _hosted_urls(requested):
        for method in ("get", "post", "put", "delete", "head"):
            response = getattr(dave, method)(url, data) if method == "post" else getattr(dave, method)(url)
            assert response.status_code == 404, (method, url)
    assert _state() == before and AuditEvent.objects.count() == events
    # And a workspace that does not exist answers the same.
    assert dave.get(reverse("portal:hosted", args=["no-such-workspace"])).status_code == 404


def test_another_workspaces_instance_is_unknown_here(cast, signed_in, notes):
    theirs = instance_deploy(access=cast.access(cast.dave, cast.globex), image=notes, env={})  # pending: no commit
    alice = signed_in(cast.alice)
    before = _state()
    page, *actions = _hosted_urls(theirs)[2:]
    assert alice.get(page[0]).status_code == 404
    for url, data in actions:
        assert alice.post(url, data).status_code == 404, url
    assert alice.get(_url("hosted-terminate", theirs.pk)).status_code == 404
    assert _state() == before
    assert "globex" not in _text(alice.get(_url("hosted"))).lower()


def test_anonymous_is_sent_to_sign_in(cast, requested):
    client = Client()
    for url, data in _hosted_urls(requested):
        for response in (client.get(url), client.post(url, data)):
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("account_login")), url


def test_a_member_is_refused_the_owner_and_admin_actions(cast, signed_in, requested, running_row):
    carol = signed_in(cast.carol)
    before = _state()
    for url, data in [
        (_url("hosted-approve", requested.pk), {}),
        (_url("hosted-reject", requested.pk), {}),
        (_url("hosted-terminate", requested.pk), {"confirm": "yes"}),
        (_url("hosted-terminate", running_row.pk), {"confirm": "yes"}),
    ]:
        for response in (carol.get(url), carol.post(url, data)):
            assert response.status_code == 403, url
            assert FORBIDDEN in _text(response), url
    assert _state() == before


def test_a_member_sees_only_the_instances_she_asked_for(cast, signed_in, notes, erin, requested, running_row):
    erins = instance_deploy(access=cast.access(erin), image=notes, env={})
    carol = signed_in(cast.carol)
    assert carol.get(_url("hosted-instance", requested.pk)).status_code == 200
    for other in (erins, running_row):  # another Member's request, an Admin's instance
        assert carol.get(_url("hosted-instance", other.pk)).status_code == 404
    tab = _text(carol.get(_url("hosted")))
    assert f'id="instance-{requested.pk}"' in tab
    assert f'id="instance-{erins.pk}"' not in tab and f'id="instance-{running_row.pk}"' not in tab
    # Owners and Admins see and watch them all.
    bob = signed_in(cast.bob)
    tab = _text(bob.get(_url("hosted")))
    assert all(f'id="instance-{i.pk}"' in tab for i in (requested, erins, running_row))
    assert all(bob.get(_url("hosted-instance", i.pk)).status_code == 200 for i in (requested, erins, running_row))


def test_actions_refuse_get_and_the_page_refuses_post(cast, signed_in, requested):
    alice = signed_in(cast.alice)
    for url in (
        _url("hosted-deploy", "notes"),
        _url("hosted-approve", requested.pk),
        _url("hosted-reject", requested.pk),
    ):
        assert alice.get(url).status_code == 405, url
    assert alice.post(_url("hosted")).status_code == 405
    assert alice.post(_url("hosted-instance", requested.pk)).status_code == 405
    assert alice.get(_url("hosted-terminate", requested.pk)).status_code == 200  # the confirmation
    assert alice.post(_url("hosted-deploy", "no-such-image"), {}).status_code == 404
    assert Instance.objects.get(pk=requested.pk).status == Instance.Status.REQUESTED


def test_csrf_is_enforced_on_every_hosted_form(cast, requested):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.alice)
    before, events = _state(), AuditEvent.objects.count()
    for url, data in _hosted_urls(requested)[1:]:
        if url == _url("hosted-instance", requested.pk):
            continue  # a page, no form
        assert client.post(url, data).status_code == 403, url
    assert _state() == before and AuditEvent.objects.count() == events


def test_the_csrf_token_from_the_page_lets_a_deploy_through(cast, signed_in, notes):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.carol)
    token = client.get(_url("hosted")).context["csrf_token"]
    response = client.post(
        _url("hosted-deploy", "notes"), {"notes-profile": "small", "csrfmiddlewaretoken": str(token)}
    )
    assert response.status_code == 302
    assert Instance.objects.get(workspace=cast.acme).status == Instance.Status.REQUESTED


# --- Credentials ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_credentials_never_appear_on_any_page(cast, signed_in, keyed, process_runtime):  # noqa: F811
    alice = signed_in(cast.alice)
    deployed = alice.post(
        _url("hosted-deploy", "keyed"), {"keyed-profile": "small", "keyed-env_NOTES_API_KEY": SECRET}, follow=True
    )
    instance = Instance.objects.get(workspace=cast.acme)
    assert instance.status == Instance.Status.RUNNING, instance.error
    # A server that prints its key: the raw log has it; every page shows it masked.
    with open(process_runtime._log_path(instance.runtime_id), "a") as log:
        log.write(f"connecting with key {SECRET}\n")
    pages = [
        deployed,
        alice.get(_url("hosted")),
        alice.get(_url("hosted-instance", instance.pk)),
        alice.get(_url("hosted-terminate", instance.pk)),
        signed_in(cast.bob).get(_url("hosted-instance", instance.pk)),
    ]
    for page in pages:
        assert page.status_code == 200
        assert SECRET not in _text(page), page.request["PATH_INFO"]
    logs = pages[2]
    assert f"connecting with key {MASK}" in logs.context["logs"].lines
    assert f"connecting with key {MASK}" in _text(logs)
    assert '<code>NOTES_API_KEY</code> <span class="muted">(names only' in _text(logs)


def test_help_text_from_the_catalog_is_shown_as_text(cast, signed_in):
    AllowedImage.objects.create(
        slug="wiki",
        name="Wiki",
        image="local/process",
        mcp_command="python -m apps.hosting.servers.notes",
        required_env_vars=[
            {"key": "WIKI_URL", "label": "Wiki URL", "type": "text", "help": "<b>Base</b> URL", "required": False}
        ],
    )
    body = signed_in(cast.alice).get(_url("hosted")).content.decode()
    card = body.split('id="image-wiki"')[1].split("</article>")[0]
    assert "&lt;b&gt;Base&lt;/b&gt; URL" in card and "<b>" not in card
    assert '<span class="badge unverified">Unverified</span>' in card
    text_input = re.search(r'<input type="text" name="wiki-env_WIKI_URL"[^>]*>', card).group(0)
    assert "required" not in text_input and "(optional)" in card


def test_an_unavailable_server_is_listed_with_its_reason_and_cannot_be_deployed(cast, signed_in):
    AllowedImage.objects.create(
        slug="browser",
        name="Browser",
        image="local/process",
        mcp_command="python -m apps.hosting.servers.notes",
        unavailable_reason="Needs a Chromium the runtime image does not ship.",
    )
    alice = signed_in(cast.alice)
    card = _text(alice.get(_url("hosted"))).split('id="image-browser"')[1].split("</article>")[0]
    assert "Not available here:</strong> Needs a Chromium the runtime image does not ship." in card
    assert "<form" not in card
    refused = alice.post(_url("hosted-deploy", "browser"), {"browser-profile": "small"})
    assert refused.status_code == 200
    assert "Browser cannot be deployed here: Needs a Chromium" in _text(refused)
    assert not Instance.objects.exists()


def test_outbound_access_is_asked_for_only_where_the_server_needs_it(cast, signed_in, notes):
    AllowedImage.objects.create(
        slug="search",
        name="Search",
        image="local/process",
        mcp_command="python -m apps.hosting.servers.notes",
        egress=AllowedImage.Egress.OPEN,
    )
    carol = signed_in(cast.carol)
    body = _text(carol.get(_url("hosted")))
    search = body.split('id="image-search"')[1].split("</article>")[0]
    assert 'name="search-egress"' in search and "An Owner or Admin grants it with the approval." in search
    assert 'name="notes-egress"' not in body
    carol.post(_url("hosted-deploy", "search"), {"search-profile": "small", "search-egress": "on"})
    carol.post(_url("hosted-deploy", "notes"), {"notes-profile": "small", "notes-egress": "on"})  # not offered
    asked = dict(Instance.objects.values_list("image__slug", "egress"))
    assert asked == {"search": AllowedImage.Egress.OPEN, "notes": AllowedImage.Egress.NONE}
    page = _text(signed_in(cast.bob).get(_url("hosted-instance", Instance.objects.get(image__slug="search").pk)))
    assert "Outbound access allowed" in page


def test_a_refused_deploy_says_so_at_the_top_and_points_at_its_card(cast, signed_in, keyed):  # noqa: F811
    response = signed_in(cast.carol).post(_url("hosted-deploy", "keyed"), {"keyed-profile": "small"})
    body = _text(response)
    assert 'Keyed notes was not requested: <a href="#image-keyed">see why</a>.' in body
    assert body.index('role="alert"') < body.index('id="instances"')


def test_an_approval_the_plan_has_no_room_for_is_refused_with_the_reason(cast, signed_in, notes, requested):
    for _ in range(3):
        Instance.objects.create(workspace=cast.acme, image=notes, status=Instance.Status.RUNNING, healthy=True)
    response = signed_in(cast.alice).post(_url("hosted-approve", requested.pk), follow=True)
    assert response.redirect_chain == [(_url("hosted") + "#instances", 302)]
    assert "The Team plan runs at most 3 hosted instances per workspace" in _messages(response)[0]
    assert Instance.objects.get(pk=requested.pk).status == Instance.Status.REQUESTED
