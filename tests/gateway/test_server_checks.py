"""Approving a server and checking it contact the upstream: never inside a request's
transaction (issue 8). The request records what was asked on the server and queues a task
on commit; the task contacts the upstream, then records the outcome in a short transaction.

The cast (tests/conftest.py): in "acme", alice (Owner), bob (Admin), carol (Member).
"""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.gateway import services, tasks
from apps.gateway.models import CHECK_STALE_AFTER, UpstreamServer
from apps.gateway.services import server_add, server_approve, server_check_request

APPROVE, HEALTH = UpstreamServer.CheckKind.APPROVE, UpstreamServer.CheckKind.HEALTH
QUEUED, RUNNING, DONE, FAILED = (
    UpstreamServer.CheckState.QUEUED,
    UpstreamServer.CheckState.RUNNING,
    UpstreamServer.CheckState.DONE,
    UpstreamServer.CheckState.FAILED,
)
ADMIN_CHANGELIST = reverse("admin:gateway_upstreamserver_changelist")


def _events(action: Action) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


@pytest.fixture
def upstream_calls(monkeypatch) -> list[bool]:
    """Each time a service asks an upstream for its tools: whether a transaction was open."""
    calls: list[bool] = []
    fetch = services._fetch_tools

    def watched(server: UpstreamServer):
        calls.append(connection.in_atomic_block)
        return fetch(server)

    monkeypatch.setattr(services, "_fetch_tools", watched)
    return calls


def _signed_in(user, *, staff: bool = False) -> Client:
    if staff:  # bob, as an operator in the admin too (his role in acme still decides)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user.user_permissions.add(Permission.objects.get(codename="change_upstreamserver"))
    client = Client()
    client.force_login(user)
    return client


# What asks for an approval or a check, in each place: portal URL, admin action, API URL.
ASK = {
    "approve": ("portal:security-server-approve", "approve", "api:gateway-server-approve"),
    "check": ("portal:security-server-health", "check_now", "api:gateway-server-health-check"),
}


def _ask(what: str, channel: str, bob, server: UpstreamServer):
    portal, action, api = ASK[what]
    if channel == "portal":
        return _signed_in(bob).post(reverse(portal, args=["acme", server.pk]))
    if channel == "admin":
        body = {"action": action, "_selected_action": [server.pk], "index": 0}
        return _signed_in(bob, staff=True).post(ADMIN_CHANGELIST, body)
    return _signed_in(bob).post(reverse(api, kwargs={"slug": "acme", "pk": server.pk}))


# --- The rule ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # real commits: the task runs after them, in-process
@pytest.mark.parametrize("channel", ["portal", "admin", "api"])
def test_approving_reaches_the_upstream_only_outside_any_transaction(cast, upstream, upstream_calls, channel):
    requested = server_add(access=cast.access(cast.carol), slug="fix", url=upstream.url)
    response = _ask("approve", channel, cast.bob, requested)
    assert response.status_code in (202, 302), response.content
    assert upstream_calls == [False]
    requested.refresh_from_db()
    assert (requested.status, requested.approved_by, requested.check_state) == ("approved", cast.bob, DONE)
    assert requested.pins.count() == 4
    (event,) = _events(Action.SERVER_APPROVED)
    assert (event.actor, event.ip, event.metadata) == (cast.bob, "127.0.0.1", {"tools_pinned": 4, "reachable": True})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("channel", ["portal", "admin", "api"])
def test_checking_reaches_the_upstream_only_outside_any_transaction(cast, fix_server, upstream_calls, channel):
    response = _ask("check", channel, cast.bob, fix_server)
    assert response.status_code in (202, 302), response.content
    assert upstream_calls == [False]
    fix_server.refresh_from_db()
    assert (fix_server.check_kind, fix_server.check_state, fix_server.health_detail) == (HEALTH, DONE, "4 tools")
    (event,) = _events(Action.HEALTH_CHECKED)
    assert (event.actor, event.ip) == (cast.bob, "127.0.0.1")


@pytest.mark.django_db(transaction=True)
def test_adding_a_server_in_the_portal_approves_it_outside_any_transaction(cast, upstream, upstream_calls):
    add = reverse("portal:security-server-add", args=["acme"])
    assert _signed_in(cast.alice).post(add, {"slug": "fix", "url": upstream.url}).status_code == 302
    assert upstream_calls == [False]
    server = UpstreamServer.objects.get(slug="fix")
    assert (server.status, server.check_kind, server.check_state) == ("approved", APPROVE, DONE)


# --- One check at a time, done once -----------------------------------------------------------


def test_a_double_click_queues_one_task(cast, fix_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first = server_check_request(access=cast.access(cast.bob), server=fix_server)
        second = server_check_request(access=cast.access(cast.alice), server=fix_server)
    assert len(queued) == 1
    assert (second.check_requested_at, second.check_requested_by) == (first.check_requested_at, cast.bob)
    queued[0]()
    tasks.server_check_run(fix_server.pk)  # the broker delivers it again: nothing left to do
    assert len(_events(Action.HEALTH_CHECKED)) == 1


def test_an_approval_takes_the_place_of_a_queued_check(cast, upstream, django_capture_on_commit_callbacks):
    requested = server_add(access=cast.access(cast.carol), slug="fix", url=upstream.url)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        server_check_request(access=cast.access(cast.bob), server=requested)
        approving = server_approve(access=cast.access(cast.alice), server=requested, ip="10.0.0.9")
    assert (approving.check_kind, approving.check_state, approving.check_requested_by) == (APPROVE, QUEUED, cast.alice)
    assert len(queued) == 1  # the check's task carries out what the row now asks for
    queued[0]()
    tasks.server_check_run(requested.pk)
    requested.refresh_from_db()
    assert (requested.status, requested.approved_by, requested.pins.count()) == ("approved", cast.alice, 4)
    (event,) = _events(Action.SERVER_APPROVED)
    assert (event.actor, event.ip) == (cast.alice, "10.0.0.9")
    assert not _events(Action.HEALTH_CHECKED)
    with pytest.raises(RuleViolation, match="already approved; approve changed tools one by one"):
        server_approve(access=cast.access(cast.alice), server=requested)


def test_approving_while_a_check_runs_is_refused(cast, upstream, monkeypatch, django_capture_on_commit_callbacks):
    requested = server_add(access=cast.access(cast.carol), slug="fix", url=upstream.url)
    refusals: list[str] = []
    fetch = services._fetch_tools

    def approve_meanwhile(server: UpstreamServer):
        # An Admin presses Approve while the worker is talking to the upstream.
        try:
            server_approve(access=cast.access(cast.alice), server=server)
        except RuleViolation as exc:
            refusals.append(str(exc))
        return fetch(server)

    monkeypatch.setattr(services, "_fetch_tools", approve_meanwhile)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        server_check_request(access=cast.access(cast.bob), server=requested)
    assert len(queued) == 1
    assert refusals == ["A check of 'fix' is under way; approve it once it has finished."]
    requested.refresh_from_db()
    assert (requested.status, requested.check_kind, requested.check_state) == ("requested", HEALTH, DONE)


def test_a_check_stopped_by_its_time_limit_says_so(cast, fix_server, monkeypatch, django_capture_on_commit_callbacks):
    def out_of_time(server: UpstreamServer):
        raise SoftTimeLimitExceeded()  # what Celery raises in the task at soft_time_limit

    monkeypatch.setattr(services, "_fetch_tools", out_of_time)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        server_check_request(access=cast.access(cast.bob), server=fix_server)
    with pytest.raises(SoftTimeLimitExceeded):
        queued[0]()
    fix_server.refresh_from_db()
    assert not fix_server.checking
    assert (fix_server.check_state, fix_server.check_error) == (FAILED, "The check stopped on an unexpected error.")
    assert fix_server.check_finished_at is not None


# --- Lost checks, and beat -----------------------------------------------------------------


def test_a_lost_check_is_given_up_and_can_be_asked_for_again(cast, fix_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as lost:
        server_check_request(access=cast.access(cast.bob), server=fix_server)
    assert fix_server.__class__.objects.get(pk=fix_server.pk).checking
    # Its worker died: time passes, beyond how long any check may take.
    long_ago = fix_server.check_requested_at - CHECK_STALE_AFTER
    UpstreamServer.objects.filter(pk=fix_server.pk).update(check_requested_at=long_ago)
    fix_server.refresh_from_db()
    assert not fix_server.checking

    assert services.server_check_sweep() == 1
    fix_server.refresh_from_db()
    assert fix_server.check_state == FAILED and fix_server.check_error.startswith("Not finished within 10 minutes")
    assert services.server_check_sweep() == 0

    with django_capture_on_commit_callbacks(execute=False) as asked_again:
        server_check_request(access=cast.access(cast.bob), server=fix_server)
    assert len(lost) == len(asked_again) == 1
    asked_again[0]()
    fix_server.refresh_from_db()
    assert (fix_server.check_state, fix_server.health_detail) == (DONE, "4 tools")


def test_beat_leaves_alone_a_server_whose_check_is_under_way(cast, fix_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        server_check_request(access=cast.access(cast.bob), server=fix_server)
    checked_at = UpstreamServer.objects.get(pk=fix_server.pk).health_checked_at
    assert tasks.check_servers() == 0
    assert UpstreamServer.objects.get(pk=fix_server.pk).health_checked_at == checked_at


# --- The admin shows it ------------------------------------------------------------------------


def test_the_admin_shows_the_last_check_asked_for(cast, fix_server, django_capture_on_commit_callbacks):
    bob = _signed_in(cast.bob, staff=True)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = bob.post(
            ADMIN_CHANGELIST, {"action": "check_now", "_selected_action": [fix_server.pk], "index": 0}, follow=True
        )
    assert "Check asked for (see “last check asked for”): acme/fix." in response.content.decode()
    assert "Health check queued since" in bob.get(ADMIN_CHANGELIST).content.decode()
    queued[0]()
    page = bob.get(reverse("admin:gateway_upstreamserver_change", args=[fix_server.pk])).content.decode()
    assert "Health check done" in page and "bob@example.com" in page

    refused = bob.post(
        ADMIN_CHANGELIST, {"action": "approve", "_selected_action": [fix_server.pk], "index": 0}, follow=True
    )
    assert "Refused: acme/fix (Server &#x27;fix&#x27; is already approved" in refused.content.decode()
