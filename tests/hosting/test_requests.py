"""A Member asks for a hosted server; an Owner or Admin approves (it deploys) or rejects it."""

from __future__ import annotations

import pytest

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.hosting.models import Instance
from apps.hosting.services import instance_approve, instance_deploy, instance_reject, instance_terminate, plan_usage
from apps.rbac.access import PermissionDenied

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "request-secret-9876"


def _actions(instance: Instance) -> list[str]:
    events = AuditEvent.objects.filter(target_type="instance", target_id=str(instance.pk)).order_by("seq")
    return list(events.values_list("action", flat=True))


def test_a_members_request_waits_then_an_admin_approves_and_it_runs(cast, keyed):
    asked = instance_deploy(access=cast.access(cast.carol), image=keyed, env={"NOTES_API_KEY": SECRET})
    assert (asked.status, asked.created_by, asked.runtime_id) == (Instance.Status.REQUESTED, cast.carol, "")
    assert asked.get_env() == {"NOTES_API_KEY": SECRET}  # kept, encrypted, for the deploy
    assert plan_usage(cast.acme) == (0, 3)  # a request takes no place until approved

    with pytest.raises(PermissionDenied):
        instance_approve(access=cast.access(cast.carol), instance=asked)

    running = instance_approve(access=cast.access(cast.bob), instance=asked)
    assert running.status == Instance.Status.RUNNING, running.error
    assert running.approved_by == cast.bob and running.healthy
    assert _actions(running) == [Action.INSTANCE_REQUESTED, Action.INSTANCE_APPROVED]
    with pytest.raises(RuleViolation, match="not requested"):
        instance_approve(access=cast.access(cast.bob), instance=running)
    assert instance_terminate(access=cast.access(cast.alice), instance=running).status == Instance.Status.STOPPED


def test_a_rejected_request_forgets_its_credentials(cast, keyed):
    asked = instance_deploy(access=cast.access(cast.carol), image=keyed, env={"NOTES_API_KEY": SECRET})
    rejected = instance_reject(access=cast.access(cast.alice), instance=asked)
    assert rejected.status == Instance.Status.REJECTED
    assert Instance.objects.get(pk=asked.pk).env_encrypted == ""
    assert _actions(asked) == [Action.INSTANCE_REQUESTED, Action.INSTANCE_REJECTED]
    with pytest.raises(RuleViolation, match="not requested"):
        instance_approve(access=cast.access(cast.alice), instance=asked)


def test_approval_respects_the_plan_limit(cast, notes):
    asked = instance_deploy(access=cast.access(cast.carol), image=notes, env={})
    for status in (Instance.Status.PENDING, Instance.Status.STARTING, Instance.Status.RUNNING):
        Instance.objects.create(workspace=cast.acme, image=notes, status=status)
    with pytest.raises(RuleViolation, match="Team plan runs at most 3"):
        instance_approve(access=cast.access(cast.alice), instance=asked)
    assert Instance.objects.get(pk=asked.pk).status == Instance.Status.REQUESTED


def test_another_workspace_cannot_decide(cast, notes):
    asked = instance_deploy(access=cast.access(cast.carol), image=notes, env={})
    for decide in (instance_approve, instance_reject):
        with pytest.raises(RuleViolation, match="another workspace"):
            decide(access=cast.access(cast.dave, cast.globex), instance=asked)
    assert Instance.objects.get(pk=asked.pk).status == Instance.Status.REQUESTED
