"""Gateway tokens: what is stored, what verifies, who may revoke, and how revocation spreads."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.core.models import Epoch
from apps.rbac.access import Access, PermissionDenied
from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_find, token_verify
from apps.tokens.services import (
    token_create,
    token_revoke,
    token_touch,
    tokens_revoke_for_member,
)
from apps.workspaces.services import workspace_delete

TOKEN_RE = re.compile(r"^mng_[0-9a-f]{48}$")


def issue(cast, user, member="self", **kwargs):
    return token_create(access=cast.access(user), member=user if member == "self" else member, **kwargs)


def test_format_digest_and_prefix(cast):
    issued = issue(cast, cast.carol, name=" laptop ")
    assert TOKEN_RE.match(issued.raw)
    token = issued.token
    assert token.digest == hashlib.sha256(issued.raw.encode()).hexdigest()
    assert token.prefix == issued.raw[:12] and token.prefix.startswith("mng_")
    assert (token.kind, token.user, token.name, token.created_by) == ("member", cast.carol, "laptop", cast.carol)
    assert token.expires_at is None and token.is_active


def test_the_raw_token_is_stored_nowhere(cast):
    issued = issue(cast, cast.carol)
    row = GatewayToken.objects.filter(pk=issued.token.pk).values().get()
    text = json.dumps(row, default=str)
    assert issued.raw not in text
    assert issued.raw[12:] not in text  # not even the part after the display prefix
    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert issued.raw not in audit and issued.token.digest not in audit


def test_every_token_is_different(cast):
    raws = {issue(cast, cast.carol).raw for _ in range(20)}
    assert len(raws) == 20


def test_creation_is_recorded(cast):
    issued = issue(cast, cast.bob, member=cast.carol, name="ci", expires_days=30, ip="10.0.0.7")
    event = AuditEvent.objects.get(workspace=cast.acme, action=Action.TOKEN_CREATED)
    assert (event.actor_id, event.target_type, event.target_id, event.target_repr, event.ip) == (
        cast.bob.pk,
        "token",
        str(issued.token.pk),
        issued.token.prefix,
        "10.0.0.7",
    )
    assert event.metadata == {"kind": "member", "member": "carol@example.com", "token_name": "ci"}
    assert abs(issued.token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


def test_who_may_issue_which_token(cast):
    # A Member issues only their own tokens.
    with pytest.raises(PermissionDenied):
        issue(cast, cast.carol, member=cast.bob)
    with pytest.raises(PermissionDenied):
        issue(cast, cast.carol, member=None, kind=GatewayToken.Kind.WORKSPACE)
    # An Admin issues for members and workspace tokens.
    assert issue(cast, cast.bob, member=cast.alice).token.user == cast.alice
    workspace_token = issue(cast, cast.bob, member=cast.carol, kind=GatewayToken.Kind.WORKSPACE).token
    assert (workspace_token.kind, workspace_token.user) == ("workspace", None)


def test_member_tokens_only_for_members(cast):
    with pytest.raises(RuleViolation, match="not a member of acme"):
        issue(cast, cast.alice, member=cast.dave)
    with pytest.raises(RuleViolation, match="Say which member"):
        issue(cast, cast.alice, member=None)
    assert not GatewayToken.objects.exists()


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_expiry_bounds(cast, days):
    with pytest.raises(RuleViolation, match="between 1 and 3650"):
        issue(cast, cast.carol, expires_days=days)


def test_operators_issue_with_owner_rights_and_no_actor(cast):
    operator = Access(workspace=cast.acme, user=AnonymousUser(), role=Role.OWNER, membership=None)
    issued = token_create(access=operator, member=None, kind=GatewayToken.Kind.WORKSPACE, name="ops")
    member = token_create(access=operator, member=cast.carol)
    assert issued.token.created_by is None and member.token.created_by is None
    event = AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_CREATED).first()
    assert (event.actor_id, event.actor_repr) == (None, "")
    assert token_revoke(access=operator, token=issued.token)
    assert token_revoke(access=operator, token=member.token)


# --- Verification ----------------------------------------------------------------------


def test_verify_accepts_an_active_token(cast):
    issued = issue(cast, cast.carol)
    token = token_verify(issued.raw)
    assert token == issued.token and token.workspace == cast.acme and token.user == cast.carol


def test_verify_refuses_revoked_expired_wrong_and_malformed(cast):
    revoked = issue(cast, cast.carol)
    token_revoke(access=cast.access(cast.carol), token=revoked.token)
    expired = issue(cast, cast.carol, expires_days=1)
    GatewayToken.objects.filter(pk=expired.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    active = issue(cast, cast.carol)
    wrong = active.raw[:-1] + ("0" if active.raw[-1] != "0" else "1")
    for raw in [
        revoked.raw,
        expired.raw,
        wrong,
        active.raw.upper(),
        active.raw + "0",
        active.raw[:-1],
        " " + active.raw,
        active.raw.replace("mng_", "mnk_"),
        "",
        None,
    ]:
        assert token_verify(raw) is None, raw
    assert token_verify(active.raw) is not None


def test_verify_refuses_tokens_of_a_deleted_workspace(cast):
    acme = issue(cast, cast.carol)
    globex = token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave)
    workspace_delete(access=cast.access(cast.alice))
    assert token_verify(acme.raw) is None
    # Even if the revocation had been missed, a deleted workspace's token must not verify.
    GatewayToken.objects.filter(pk=acme.token.pk).update(revoked_at=None)
    assert token_verify(acme.raw) is None
    assert token_verify(globex.raw).workspace == cast.globex


def test_verify_refuses_tokens_of_a_deactivated_person(cast):
    issued = issue(cast, cast.carol)
    cast.carol.is_active = False
    cast.carol.save()
    assert token_verify(issued.raw) is None


# --- Revocation -------------------------------------------------------------------------


def test_revoke_is_immediate_recorded_and_broadcast(cast):
    issued = issue(cast, cast.carol, name="laptop")
    before = Epoch.objects.filter(scope="tokens").values_list("version", flat=True).first() or 0
    assert token_revoke(access=cast.access(cast.bob), token=issued.token, ip="10.0.0.2") is True
    assert token_verify(issued.raw) is None
    issued.token.refresh_from_db()
    assert issued.token.status == "revoked" and issued.token.revoked_by == cast.bob
    # The news for gateway processes is in the database, in the revocation's own transaction.
    assert Epoch.objects.get(scope="tokens").version == before + 1
    event = AuditEvent.objects.get(workspace=cast.acme, action=Action.TOKEN_REVOKED)
    assert (event.actor_id, event.target_id, event.target_repr, event.ip) == (
        cast.bob.pk,
        str(issued.token.pk),
        issued.token.prefix,
        "10.0.0.2",
    )
    assert event.metadata == {"kind": "member", "member": "carol@example.com", "reason": "revoked"}
    # Revoking again changes nothing and records nothing.
    assert token_revoke(access=cast.access(cast.bob), token=issued.token) is False
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED).count() == 1


def test_a_member_revokes_their_own_token_not_someone_elses(cast):
    carols = issue(cast, cast.carol)
    bobs = issue(cast, cast.bob)
    workspace_token = issue(cast, cast.alice, member=None, kind=GatewayToken.Kind.WORKSPACE)
    for other in [bobs.token, workspace_token.token]:
        with pytest.raises(PermissionDenied):
            token_revoke(access=cast.access(cast.carol), token=other)
        other.refresh_from_db()
        assert other.is_active
    assert token_revoke(access=cast.access(cast.carol), token=carols.token)


def test_tokens_of_another_workspace_cannot_be_revoked(cast):
    daves = token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave)
    with pytest.raises(RuleViolation, match="another workspace"):
        token_revoke(access=cast.access(cast.alice), token=daves.token)
    daves.token.refresh_from_db()
    assert daves.token.is_active


def test_revoke_for_member_counts_only_active_tokens(cast):
    first, second = issue(cast, cast.carol), issue(cast, cast.carol)
    token_revoke(access=cast.access(cast.carol), token=first.token)
    assert tokens_revoke_for_member(workspace=cast.acme, user=cast.carol, actor=cast.alice, ip=None) == 1
    second.token.refresh_from_db()
    assert second.token.revoked_by == cast.alice


# --- Finding and touching ------------------------------------------------------------------


def test_token_find_by_prefix(cast):
    issued = issue(cast, cast.carol)
    other = issue(cast, cast.carol)
    assert token_find(workspace=cast.acme, prefix=issued.token.prefix) == issued.token
    assert token_find(workspace=cast.acme, prefix=issued.token.prefix + "…") == issued.token
    with pytest.raises(RuleViolation, match="more than one"):
        token_find(workspace=cast.acme, prefix="mng_")
    with pytest.raises(RuleViolation, match="No token"):
        token_find(workspace=cast.globex, prefix=issued.token.prefix)
    with pytest.raises(RuleViolation, match="No token"):
        token_find(workspace=cast.acme, prefix="")
    assert other.token != issued.token


def test_token_touch_writes_at_most_once_a_minute(cast, django_assert_num_queries):
    token = issue(cast, cast.carol).token
    start = timezone.now()
    with django_assert_num_queries(1):
        assert token_touch(token, now=start) is True
    with django_assert_num_queries(0):
        assert token_touch(token, now=start + timedelta(seconds=59)) is False
    with django_assert_num_queries(1):
        assert token_touch(token, now=start + timedelta(seconds=61)) is True
    token.refresh_from_db()
    assert token.last_used_at == start + timedelta(seconds=61)
