"""Operator commands for gateway tokens: issuetoken and revoketoken."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_verify
from apps.tokens.services import token_create


def run(*args, **options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def refused(*args, **options) -> str:
    with pytest.raises(CommandError) as error:
        run(*args, **options)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_issuetoken_prints_only_the_member_token(cast):
    out, err = run("issuetoken", "acme", member="Carol@Example.com", name="laptop", expires_days=30)
    raw = out.removesuffix("\n")
    assert re.fullmatch(r"mng_[0-9a-f]{48}", raw) and out == raw + "\n"
    token = token_verify(raw)
    assert (token.workspace, token.user, token.kind, token.name) == (cast.acme, cast.carol, "member", "laptop")
    assert token.expires_at is not None and token.created_by is None
    assert token.prefix in err and raw not in err
    event = AuditEvent.objects.get(workspace=cast.acme, action=Action.TOKEN_CREATED)
    assert (event.actor_id, event.target_repr) == (None, token.prefix)


def test_issuetoken_without_member_issues_a_workspace_token(cast):
    out, _ = run("issuetoken", "acme")
    token = token_verify(out.strip())
    assert (token.kind, token.user, token.expires_at) == ("workspace", None, None)


def test_issuetoken_errors(cast):
    assert "No workspace with slug 'nope'" in refused("issuetoken", "nope")
    assert "No account with email nobody@example.com" in refused("issuetoken", "acme", member="nobody@example.com")
    assert "dave@example.com is not a member of acme" in refused("issuetoken", "acme", member="dave@example.com")
    assert "between 1 and 3650" in refused("issuetoken", "acme", expires_days=0)
    assert "invalid int value" in refused("issuetoken", "acme", "--expires-days", "soon")
    assert not GatewayToken.objects.exists()


def test_issuetoken_refuses_a_deleted_workspace(cast):
    cast.acme.deleted_at = cast.acme.created_at
    cast.acme.save()
    assert "No workspace with slug 'acme'" in refused("issuetoken", "acme")


def test_revoketoken_revokes_by_prefix(cast, django_capture_on_commit_callbacks):
    issued = token_create(access=cast.access(cast.carol), member=cast.carol, name="laptop")
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run("revoketoken", "acme", issued.token.prefix)
    assert f"Revoked {issued.token.prefix}" in out and "carol@example.com" in out and "laptop" in out
    assert token_verify(issued.raw) is None
    event = AuditEvent.objects.get(workspace=cast.acme, action=Action.TOKEN_REVOKED)
    assert (event.actor_id, event.target_id) == (None, str(issued.token.pk))
    out, _ = run("revoketoken", "acme", issued.token.prefix)
    assert "already revoked" in out
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED).count() == 1


def test_revoketoken_revokes_a_workspace_token(cast):
    issued = token_create(access=cast.access(cast.alice), member=None, kind=GatewayToken.Kind.WORKSPACE)
    out, _ = run("revoketoken", "acme", issued.token.prefix + "…")
    assert "workspace token" in out and token_verify(issued.raw) is None


def test_revoketoken_errors(cast):
    first = token_create(access=cast.access(cast.carol), member=cast.carol)
    token_create(access=cast.access(cast.carol), member=cast.carol)
    daves = token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave)
    assert "more than one token" in refused("revoketoken", "acme", "mng_")
    assert "No token with prefix" in refused("revoketoken", "acme", "mng_zzzz")
    # Another workspace's token is unknown here, even with its exact prefix.
    assert "No token with prefix" in refused("revoketoken", "acme", daves.token.prefix)
    assert "No workspace" in refused("revoketoken", "nope", first.token.prefix)
    assert GatewayToken.objects.active().count() == 3
