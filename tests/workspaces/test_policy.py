"""workspace_set_policy: the one way the gateway policy changes (enforcement mode,
deny-by-default, rate limit), whoever asks — who may, its one audit row, the gateway's
reload, and values the Workspace model refuses."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.epochs import epoch_bump
from apps.rbac.access import PermissionDenied
from apps.workspaces.models import Enforcement, Workspace
from apps.workspaces.services import GatewayPolicy, workspace_set_policy, workspace_set_rate_limit


def policy_of(workspace: Workspace) -> tuple[str, bool, int]:
    workspace = Workspace.objects.get(pk=workspace.pk)
    return workspace.enforcement, workspace.deny_by_default, workspace.rate_limit_per_minute


def events(workspace: Workspace) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(workspace=workspace).order_by("seq"))


def test_an_admin_changes_all_three_in_one_audit_row_and_one_reload(cast):
    policy = GatewayPolicy(enforcement=Enforcement.SHADOW, deny_by_default=True, rate_limit_per_minute=30)
    with mock.patch("apps.core.epochs.epoch_bump", wraps=epoch_bump) as bump:
        workspace = workspace_set_policy(access=cast.access(cast.bob), policy=policy, ip="10.0.0.9")
    assert policy_of(cast.acme) == ("shadow", True, 30)
    assert (workspace.enforcement, workspace.deny_by_default, workspace.rate_limit_per_minute) == ("shadow", True, 30)
    bump.assert_called_once_with(f"ws:{cast.acme.pk}")  # gateway processes reload the workspace
    (event,) = events(cast.acme)
    assert (event.action, event.actor, event.target_type, event.target_repr, event.ip) == (
        Action.ENFORCEMENT_CHANGED,
        cast.bob,
        "workspace",
        "acme",
        "10.0.0.9",
    )
    assert event.metadata == {
        "changes": {
            "enforcement": ["off", "shadow"],
            "deny_by_default": [False, True],
            "rate_limit_per_minute": [200, 30],
        }
    }


def test_fields_left_out_stay_and_only_what_changed_is_recorded(cast):
    workspace_set_policy(
        access=cast.access(cast.alice), policy=GatewayPolicy(enforcement=Enforcement.OFF, rate_limit_per_minute=50)
    )
    assert policy_of(cast.acme) == ("off", False, 50)
    (event,) = events(cast.acme)
    assert event.metadata == {"changes": {"rate_limit_per_minute": [200, 50]}}


def test_nothing_changed_records_nothing_and_reloads_nothing(cast):
    with mock.patch("apps.core.epochs.epoch_bump", wraps=epoch_bump) as bump:
        workspace_set_policy(
            access=cast.access(cast.alice),
            policy=GatewayPolicy(enforcement=Enforcement.OFF, deny_by_default=False, rate_limit_per_minute=200),
        )
        workspace_set_policy(access=cast.access(cast.alice), policy=GatewayPolicy())
    bump.assert_not_called()
    assert events(cast.acme) == []


def test_members_and_outsiders_are_refused(cast):
    for user in (cast.carol, cast.dave):
        with pytest.raises(PermissionDenied):
            workspace_set_policy(access=cast.access(user), policy=GatewayPolicy(deny_by_default=True))
    assert policy_of(cast.acme) == ("off", False, 200)
    assert events(cast.acme) == []


def test_values_the_model_refuses_change_nothing_and_name_each_field(cast):
    policy = GatewayPolicy(enforcement="sometimes", deny_by_default=True, rate_limit_per_minute=0)
    with pytest.raises(ValidationError) as refused:
        workspace_set_policy(access=cast.access(cast.bob), policy=policy)
    assert set(refused.value.message_dict) == {"enforcement", "rate_limit_per_minute"}
    assert "not a valid choice" in refused.value.message_dict["enforcement"][0]
    assert policy_of(cast.acme) == ("off", False, 200)  # deny_by_default, though valid, did not change
    assert cast.acme.deny_by_default is False  # nor in memory
    assert events(cast.acme) == []


def test_pick_takes_only_the_policy_fields_present():
    assert GatewayPolicy.pick({"name": "Acme", "rate_limit_per_minute": 5}) == GatewayPolicy(rate_limit_per_minute=5)
    assert GatewayPolicy.pick({"deny_by_default": False}).given() == {"deny_by_default": False}


def test_the_rate_limit_shorthand_goes_through_the_policy_service(cast):
    workspace_set_rate_limit(access=cast.access(cast.bob), per_minute=42)
    assert policy_of(cast.acme) == ("off", False, 42)
    (event,) = events(cast.acme)
    assert (event.action, event.metadata) == (
        Action.ENFORCEMENT_CHANGED,
        {"changes": {"rate_limit_per_minute": [200, 42]}},
    )
