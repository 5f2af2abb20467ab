"""server_health_check: connect to the upstream now, record the outcome and audit it."""

from __future__ import annotations

import pytest

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.gateway.models import UpstreamServer
from apps.gateway.services import server_add, server_health_check
from apps.rbac.access import PermissionDenied
from tests.gateway.upstream import _free_port


def _checks() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=Action.HEALTH_CHECKED).order_by("seq"))


def test_a_live_upstream_is_recorded_healthy(cast, fix_server):
    UpstreamServer.objects.filter(pk=fix_server.pk).update(health_ok=False, health_detail="stale")
    fix_server.refresh_from_db()
    server_health_check(access=cast.access(cast.bob), server=fix_server, ip="10.0.0.7")
    fix_server.refresh_from_db()
    assert (fix_server.health_ok, fix_server.health_detail) == (True, "4 tools")
    (event,) = _checks()
    assert (event.actor, event.target_repr, event.ip) == (cast.bob, "fix", "10.0.0.7")
    assert event.metadata == {"ok": True, "detail": "4 tools"}


def test_a_dead_upstream_is_recorded_down(cast):
    server = server_add(access=cast.access(cast.alice), slug="gone", url=f"http://127.0.0.1:{_free_port()}/mcp")
    checked_before = server.health_checked_at
    server_health_check(access=cast.access(cast.alice), server=server)
    server.refresh_from_db()
    assert server.health_ok is False and "unreachable" in server.health_detail
    assert server.health_checked_at > checked_before
    (event,) = _checks()
    assert event.metadata == {"ok": False, "detail": server.health_detail}


def test_members_and_other_workspaces_are_refused(cast, fix_server):
    with pytest.raises(PermissionDenied):
        server_health_check(access=cast.access(cast.carol), server=fix_server)
    with pytest.raises(RuleViolation, match="another workspace"):
        server_health_check(access=cast.access(cast.dave, cast.globex), server=fix_server)
    assert not _checks()
