"""Deciding on a held tool definition: approve or reject (issue #7, item 5), and who hears of
new server requests and held definitions."""

from __future__ import annotations

import threading

import pytest
from django.core import mail
from django.db import connections

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.core.models import Epoch
from apps.gateway.models import ToolPin, UpstreamServer
from apps.gateway.services import pin_approve, pin_observe, pin_reject, server_add
from apps.rbac.access import PermissionDenied
from apps.rbac.roles import Role
from tests.factories import MembershipFactory, UserFactory

APPROVED, CHANGED, CHANGED_AGAIN = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def wiki(cast) -> UpstreamServer:
    """An approved server of acme that was not reachable when approved (no pins)."""
    server = server_add(access=cast.access(cast.carol), slug="wiki", url="https://wiki.example.com/mcp")
    UpstreamServer.objects.filter(pk=server.pk).update(status=UpstreamServer.Status.APPROVED)
    server.refresh_from_db()
    return server


def _observe(server: UpstreamServer, tool: str, fp: str, description: str = "") -> ToolPin:
    definition = {"name": tool, "description": description or f"version {fp[0]}"}
    pin_observe(server_id=server.pk, tool_name=tool, definition=definition, fingerprint=fp)
    return ToolPin.objects.get(server=server, tool_name=tool)


@pytest.fixture
def changed(cast, wiki) -> ToolPin:
    """wiki:search, approved at APPROVED, now presenting CHANGED."""
    ToolPin.objects.create(server=wiki, tool_name="search", fingerprint=APPROVED, definition={"name": "search"})
    return _observe(wiki, "search", CHANGED)


def _epoch() -> int:
    row = Epoch.objects.filter(scope=f"ws:{UpstreamServer.objects.first().workspace_id}").first()
    return row.version if row else 0


def test_reject_keeps_the_tool_withheld_and_does_not_ask_again(cast, changed):
    epoch = _epoch()
    rejected = pin_reject(access=cast.access(cast.bob), pin=changed, ip="10.0.0.9")
    assert rejected.state == ToolPin.State.REJECTED and not rejected.has_pending_change
    # The approved definition is untouched: the gateway withholds a tool whose fingerprint differs from it.
    assert (rejected.fingerprint, rejected.pending_fingerprint) == (APPROVED, CHANGED)
    assert rejected.rejected_by == cast.bob and rejected.rejected_at is not None
    assert _epoch() == epoch + 1
    (event,) = AuditEvent.objects.filter(action=Action.TOOL_PIN_REJECTED)
    assert (event.actor, event.ip, event.target_repr) == (cast.bob, "10.0.0.9", "wiki")
    assert event.metadata == {"tool": "search", "new": False, "approved": APPROVED, "fingerprint": CHANGED}

    # The upstream keeps presenting the rejected definition: nothing is held, nobody is asked.
    mail.outbox.clear()
    assert _observe(changed.server, "search", CHANGED).state == ToolPin.State.REJECTED
    assert AuditEvent.objects.filter(action=Action.TOOL_DEFINITION_CHANGED).count() == 1
    with pytest.raises(RuleViolation, match="was rejected; it waits for approval again only when the upstream"):
        pin_approve(access=cast.access(cast.alice), pin=changed)
    with pytest.raises(RuleViolation, match="was rejected"):
        pin_reject(access=cast.access(cast.alice), pin=changed)

    # A different definition waits for approval again, and can be approved.
    again = _observe(changed.server, "search", CHANGED_AGAIN)
    assert again.state == ToolPin.State.PENDING_CHANGE and again.rejected_at is None and again.rejected_by is None
    assert pin_approve(access=cast.access(cast.alice), pin=again).fingerprint == CHANGED_AGAIN


def test_a_rejected_new_tool_stays_unapproved(cast, wiki):
    new = _observe(wiki, "drop_tables", CHANGED)
    assert new.state == ToolPin.State.NEW
    rejected = pin_reject(access=cast.access(cast.alice), pin=new)
    assert (rejected.fingerprint, rejected.definition, rejected.state) == ("", {}, ToolPin.State.REJECTED)
    assert AuditEvent.objects.get(action=Action.TOOL_PIN_REJECTED).metadata["new"] is True


def test_reject_is_for_owners_and_admins_of_the_workspace(cast, changed):
    with pytest.raises(PermissionDenied):
        pin_reject(access=cast.access(cast.carol), pin=changed)
    with pytest.raises(RuleViolation, match="another workspace"):
        pin_reject(access=cast.access(cast.dave, cast.globex), pin=changed)
    pin_approve(access=cast.access(cast.alice), pin=changed)
    with pytest.raises(RuleViolation, match="no pending change to reject"):
        pin_reject(access=cast.access(cast.alice), pin=changed)
    assert not AuditEvent.objects.filter(action=Action.TOOL_PIN_REJECTED).exists()


def test_owners_and_admins_are_mailed_once_per_held_definition(cast, wiki, django_capture_on_commit_callbacks):
    MembershipFactory(workspace=cast.acme, user=UserFactory(email="gone@example.com", is_active=False), role=Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        _observe(wiki, "search", CHANGED, "Search the wiki.")
        _observe(wiki, "search", CHANGED)  # the same definition seen again (another gateway process)
    (message,) = mail.outbox
    assert message.subject == "[MCPNest] Acme: new tool wiki:search waits for your approval"
    assert message.to == ["alice@example.com", "bob@example.com"]  # not carol (Member), not an inactive Admin
    assert "The MCP server “wiki” offers a new tool “search”." in message.body
    assert "/w/acme/security/" in message.body
    with django_capture_on_commit_callbacks(execute=True):
        _observe(wiki, "search", CHANGED_AGAIN)
    assert len(mail.outbox) == 2


def test_owners_and_admins_are_mailed_about_a_server_request(cast, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        server_add(access=cast.access(cast.carol), slug="wiki", url="https://wiki.example.com/mcp")
        server_add(access=cast.access(cast.dave, cast.globex), slug="theirs", url="https://x.example.com/mcp")
    (message,) = mail.outbox  # an Owner's own server waits for nobody
    assert message.subject == "[MCPNest] Acme: server wiki waits for your approval"
    assert message.to == ["alice@example.com", "bob@example.com"]
    assert "carol@example.com asked to add the MCP server “wiki” (https://wiki.example.com/mcp)." in message.body


def test_a_failing_mail_server_does_not_undo_the_change(cast, wiki, django_capture_on_commit_callbacks, settings):
    settings.EMAIL_BACKEND = "tests.gateway.test_pins.BrokenBackend"
    with django_capture_on_commit_callbacks(execute=True):
        pin = _observe(wiki, "search", CHANGED)
    assert pin.has_pending_change


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("no mail server")


@pytest.mark.django_db(transaction=True)
def test_concurrent_observers_of_one_server_do_not_deadlock(cast, require_postgres):
    """Gateway processes and a check may hold changes of one server at the same moment."""
    server = server_add(access=cast.access(cast.carol), slug="wiki", url="https://wiki.example.com/mcp")
    UpstreamServer.objects.filter(pk=server.pk).update(status=UpstreamServer.Status.APPROVED)
    names = [f"tool{n}" for n in range(8)]
    for name in names[:4]:  # changed tools and new ones, as after a rug pull
        ToolPin.objects.create(server=server, tool_name=name, fingerprint=APPROVED, definition={"name": name})
    errors: list[str] = []
    start = threading.Barrier(len(names))

    def observe(name: str) -> None:
        try:
            start.wait()
            pin_observe(server_id=server.pk, tool_name=name, definition={"name": name}, fingerprint=CHANGED)
        except Exception as exc:  # the assertion below names it
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=observe, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert ToolPin.objects.filter(server=server, pending_fingerprint=CHANGED).count() == len(names)
    assert AuditEvent.objects.filter(action=Action.TOOL_DEFINITION_CHANGED).count() == len(names)
