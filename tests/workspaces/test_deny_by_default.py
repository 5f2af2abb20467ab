"""workspace_set_deny_by_default: who may change it, its audit row, and the gateway's reload."""

from __future__ import annotations

from unittest import mock

import pytest

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.epochs import epoch_bump
from apps.rbac.access import PermissionDenied
from apps.workspaces.models import Workspace
from apps.workspaces.services import workspace_set_deny_by_default


def test_admin_turns_deny_by_default_on_and_off_with_an_audit_row_each(cast):
    with mock.patch("apps.core.epochs.epoch_bump", wraps=epoch_bump) as bump:
        workspace_set_deny_by_default(access=cast.access(cast.bob), deny=True, ip="10.0.0.9")
    assert Workspace.objects.get(pk=cast.acme.pk).deny_by_default is True
    bump.assert_called_once_with(f"ws:{cast.acme.pk}")  # gateway processes reload the workspace
    event = AuditEvent.objects.filter(workspace=cast.acme).latest("seq")
    assert (event.action, event.actor, event.target_repr, event.ip) == (
        Action.ENFORCEMENT_CHANGED,
        cast.bob,
        "acme",
        "10.0.0.9",
    )
    assert event.metadata == {"deny_by_default": [False, True]}

    workspace_set_deny_by_default(access=cast.access(cast.alice), deny=False)
    assert Workspace.objects.get(pk=cast.acme.pk).deny_by_default is False
    assert AuditEvent.objects.filter(workspace=cast.acme).latest("seq").metadata == {"deny_by_default": [True, False]}


def test_unchanged_records_nothing_and_members_are_refused(cast):
    workspace_set_deny_by_default(access=cast.access(cast.alice), deny=False)
    assert not AuditEvent.objects.filter(workspace=cast.acme).exists()
    with pytest.raises(PermissionDenied):
        workspace_set_deny_by_default(access=cast.access(cast.carol), deny=True)
    assert Workspace.objects.get(pk=cast.acme.pk).deny_by_default is False
