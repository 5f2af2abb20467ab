"""Server checks: connect to the upstream now, record the outcome and audit it, and hold
changed and new tools for approval as the gateway does (manual, queued and scheduled)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.db import connection

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.gateway import services, tasks
from apps.gateway.models import ToolPin, UpstreamServer
from apps.gateway.services import (
    server_add,
    server_approve,
    server_check_request,
    server_set_enabled,
)
from apps.gateway.snapshots import one_off_pool, workspace_config
from apps.rbac.access import PermissionDenied
from apps.rbac.roles import Role
from apps.workspaces.models import Membership
from relay import catalog
from relay.catalog import fingerprint
from tests.gateway.upstream import _free_port, build_server, change_tools, running


def _checks() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=Action.HEALTH_CHECKED).order_by("seq"))


@pytest.fixture
def check_now(django_capture_on_commit_callbacks):
    """``check_now(access, server, ip=None)``: ask for a check, and run its task as after the commit."""

    def check(access, server: UpstreamServer, ip: str | None = None) -> UpstreamServer:
        with django_capture_on_commit_callbacks(execute=True):
            server_check_request(access=access, server=server, ip=ip)
        server.refresh_from_db()
        return server

    return check


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """``with committed():`` runs the tasks queued inside, as after the commit (an approval's)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_a_live_upstream_is_recorded_healthy(cast, fix_server, check_now):
    UpstreamServer.objects.filter(pk=fix_server.pk).update(health_ok=False, health_detail="stale")
    fix_server.refresh_from_db()
    check_now(cast.access(cast.bob), fix_server, ip="10.0.0.7")
    assert (fix_server.health_ok, fix_server.health_detail) == (True, "4 tools")
    (event,) = _checks()
    assert (event.actor, event.target_repr, event.ip) == (cast.bob, "fix", "10.0.0.7")
    assert event.metadata == {"ok": True, "detail": "4 tools"}


def test_a_dead_upstream_is_recorded_down(cast, check_now, committed):
    with committed():
        server = server_add(access=cast.access(cast.alice), slug="gone", url=f"http://127.0.0.1:{_free_port()}/mcp")
    server.refresh_from_db()
    checked_before = server.health_checked_at
    check_now(cast.access(cast.alice), server)
    assert server.health_ok is False and "unreachable" in server.health_detail
    assert server.health_checked_at > checked_before
    (event,) = _checks()
    assert event.metadata == {"ok": False, "detail": server.health_detail}


def test_members_and_other_workspaces_are_refused(cast, fix_server):
    with pytest.raises(PermissionDenied):
        server_check_request(access=cast.access(cast.carol), server=fix_server)
    with pytest.raises(RuleViolation, match="another workspace"):
        server_check_request(access=cast.access(cast.dave, cast.globex), server=fix_server)
    fix_server.refresh_from_db()
    assert not _checks() and fix_server.check_kind == UpstreamServer.CheckKind.APPROVE  # nothing queued either


# --- Checks see changed and new tools (issue #7, item 4) --------------------------------


@pytest.fixture
def mutable(cast, committed):
    """A real upstream, approved (its 4 tools pinned); the test changes its tools afterwards."""
    mcp = build_server("mutable")
    with running(mcp) as upstream:
        with committed():
            server = server_add(access=cast.access(cast.alice), slug="mut", url=upstream.url)
        server.refresh_from_db()
        assert server.pins.count() == 4
        yield mcp, server


def _pins(server: UpstreamServer) -> dict[str, tuple[str, bool]]:
    return {pin.tool_name: (pin.state, pin.has_pending_change) for pin in ToolPin.objects.filter(server=server)}


def test_a_check_holds_changed_and_new_tools_for_approval(cast, mutable, django_capture_on_commit_callbacks):
    mcp, server = mutable
    change_tools(mcp)
    with django_capture_on_commit_callbacks(execute=True):
        server_check_request(access=cast.access(cast.bob), server=server, ip="10.0.0.7")
    server.refresh_from_db()
    assert (server.health_ok, server.health_detail) == (True, "5 tools, 2 waiting for approval")
    assert _pins(server) == {
        "add": ("approved", False),
        "echo": ("pending_change", True),
        "fail": ("approved", False),
        "read_file": ("new", True),
        "slow": ("approved", False),
    }
    echo = ToolPin.objects.get(server=server, tool_name="echo")
    assert "evil.example" in echo.pending_definition["description"]
    assert echo.fingerprint == fingerprint(echo.definition)  # the approved definition is kept as it was
    assert echo.pending_fingerprint == fingerprint(echo.pending_definition)
    new = ToolPin.objects.get(server=server, tool_name="read_file")
    assert (new.fingerprint, new.definition) == ("", {})
    assert new.pending_definition["description"] == "Read a file of the host."
    changes = AuditEvent.objects.filter(action=Action.TOOL_DEFINITION_CHANGED).order_by("seq")
    assert sorted((e.metadata["tool"], e.metadata["new"]) for e in changes) == [("echo", False), ("read_file", True)]
    assert [e.metadata for e in _checks()] == [{"ok": True, "detail": "5 tools, 2 waiting for approval"}]
    assert _checks()[0].actor == cast.bob
    # The Owners and Admins hear of each once.
    assert sorted(m.subject for m in mail.outbox) == [
        "[MCPNest] Acme: changed tool mut:echo waits for your approval",
        "[MCPNest] Acme: new tool mut:read_file waits for your approval",
    ]
    assert all(m.to == ["alice@example.com", "bob@example.com"] for m in mail.outbox)

    # Checking again finds the same changes: nothing new is recorded or sent.
    with django_capture_on_commit_callbacks(execute=True):
        server_check_request(access=cast.access(cast.bob), server=server)
    assert changes.count() == 2 and len(mail.outbox) == 2


def test_the_check_records_what_the_gateway_records(cast, mutable, check_now):
    """One rule: a check and the gateway's catalog hold the same definitions for approval."""
    mcp, server = mutable
    change_tools(mcp)
    config = workspace_config("acme")

    async def build():
        async with one_off_pool() as pool:  # the gateway's pooled connections are left alone
            return await catalog.build(config, pool)

    built = async_to_sync(build, force_new_loop=True)()
    from_gateway = {(name, fp) for _, name, _, fp in built.changed_pins}
    check_now(cast.access(cast.alice), server)
    held = set(ToolPin.objects.exclude(pending_fingerprint="").values_list("tool_name", "pending_fingerprint"))
    assert held == from_gateway and len(held) == 2


@pytest.mark.django_db(transaction=True)
def test_check_now_reaches_the_upstream_outside_any_transaction(cast, mutable, monkeypatch):
    """Issue #8's rule: the request queues the check; it runs after the commit."""
    _, server = mutable
    seen = []
    fetch = services._fetch_tools

    def spy(server):
        seen.append(connection.in_atomic_block)
        return fetch(server)

    monkeypatch.setattr(services, "_fetch_tools", spy)
    requested = server_check_request(access=cast.access(cast.bob), server=server, ip="10.0.0.8")
    assert seen == [False]
    requested.refresh_from_db()
    assert not requested.checking and requested.health_checked_at > requested.check_requested_at
    (event,) = _checks()
    assert (event.actor, event.ip) == (cast.bob, "10.0.0.8")


def test_a_check_not_yet_run_shows_as_checking(cast, fix_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        server_check_request(access=cast.access(cast.bob), server=fix_server)
    fix_server.refresh_from_db()
    assert fix_server.checking and len(queued) == 1
    queued[0]()  # the worker runs the task
    fix_server.refresh_from_db()
    assert not fix_server.checking and fix_server.health_detail == "4 tools"
    with pytest.raises(PermissionDenied):
        server_check_request(access=cast.access(cast.carol), server=fix_server)


def test_the_task_checks_the_actors_rights_again(cast, fix_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        server_check_request(access=cast.access(cast.bob), server=fix_server)
    Membership.objects.filter(workspace=cast.acme, user=cast.bob).update(role=Role.MEMBER)
    queued[0]()  # bob was demoted after asking
    fix_server.refresh_from_db()
    assert not _checks() and not fix_server.checking
    assert (fix_server.check_state, fix_server.check_error) == (
        UpstreamServer.CheckState.FAILED,
        "Dropped: bob@example.com may no longer manage this workspace's servers.",
    )
    tasks.server_check_run(10**9)  # removed meanwhile: nothing to do


def test_beat_checks_every_approved_enabled_server(cast, mutable, upstream, committed):
    mcp, live = mutable
    with committed():
        off = server_add(access=cast.access(cast.alice), slug="off", url=upstream.url)
    server_set_enabled(access=cast.access(cast.alice), server=off, enabled=False)
    asked = server_add(access=cast.access(cast.carol), slug="asked", url=upstream.url)
    with committed():
        theirs = server_add(access=cast.access(cast.dave, cast.globex), slug="theirs", url=upstream.url)
    change_tools(mcp)
    before = {s.pk: s.health_checked_at for s in UpstreamServer.objects.all()}

    assert tasks.check_servers() == 2
    after = {s.pk: s.health_checked_at for s in UpstreamServer.objects.all()}
    assert {pk for pk in after if after[pk] != before[pk]} == {live.pk, theirs.pk}
    assert after[off.pk] == before[off.pk] and after[asked.pk] is None
    assert _pins(live)["read_file"] == ("new", True) and _pins(live)["echo"] == ("pending_change", True)
    # A scheduled check is audited only when the server's health changes (the changes are, each).
    assert not _checks()
    assert AuditEvent.objects.filter(action=Action.TOOL_DEFINITION_CHANGED).count() == 2


def test_a_scheduled_check_records_a_server_going_down(cast, committed):
    with running(build_server("brief")) as brief, committed():
        server = server_add(access=cast.access(cast.alice), slug="brief", url=brief.url)
    tasks.server_check(server.pk)
    server.refresh_from_db()
    assert server.health_ok is False
    (event,) = _checks()
    assert event.actor is None and event.metadata["ok"] is False
    tasks.server_check(server.pk, None, None)  # still down: no new row (a message queued before server_check_run)
    assert len(_checks()) == 1


def test_checking_a_requested_server_lists_its_tools_without_pinning_them(cast, upstream, check_now, committed):
    asked = server_add(access=cast.access(cast.carol), slug="asked", url=upstream.url)
    assert asked.health_checked_at is None  # a request contacts nothing
    check_now(cast.access(cast.bob), asked)
    assert (asked.status, asked.health_ok, asked.health_detail) == (UpstreamServer.Status.REQUESTED, True, "4 tools")
    assert sorted(tool["name"] for tool in asked.offered_tools) == ["add", "echo", "fail", "slow"]
    assert not asked.pins.exists()
    with committed():
        server_approve(access=cast.access(cast.bob), server=asked)
    asked.refresh_from_db()
    assert asked.offered_tools is None and asked.pins.count() == 4
