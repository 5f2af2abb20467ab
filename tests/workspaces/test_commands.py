"""Operator commands: createworkspace, addmember and seed_demo."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.models import User
from apps.audit import chain
from apps.audit.events import Action
from apps.audit.models import AuditEvent, ToolCall
from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_verify
from apps.workspaces.models import Enforcement, Membership, Workspace
from tests.factories import UserFactory


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def refused(*args, **options) -> str:
    with pytest.raises(CommandError) as error:
        run(*args, **options)
    message = str(error.value)
    assert "\n" not in message
    return message


# --- createworkspace -------------------------------------------------------------------


def test_createworkspace_creates_the_owner_without_a_password(db):
    out = run("createworkspace", "initech", owner="Peter@Initech.com", plan="enterprise", name="Initech")
    workspace = Workspace.objects.get(slug="initech")
    peter = User.objects.get(email="peter@initech.com")
    assert (workspace.name, workspace.plan) == ("Initech", "enterprise")
    assert Membership.objects.get(workspace=workspace, user=peter).role == Role.OWNER
    assert not peter.has_usable_password()
    assert "initech" in out and "Forgot password" in out
    event = AuditEvent.objects.get(workspace=workspace)
    assert (event.action, event.actor_id) == (Action.WORKSPACE_CREATED, peter.pk)


def test_createworkspace_with_an_existing_account_keeps_its_password(cast):
    out = run("createworkspace", "side-project", owner="carol@example.com")
    cast.carol.refresh_from_db()
    assert cast.carol.check_password(cast.password)
    assert "Forgot password" not in out
    assert Workspace.objects.get(slug="side-project").name == "side-project"


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("Bad_Slug", "slug: Use 1–50 lowercase letters, digits and hyphens"),
        ("x" * 51, "at most 50 characters"),
        ("ends-", "starting and ending with a letter or digit"),
    ],
)
def test_createworkspace_refuses_a_bad_slug_and_creates_no_account(db, slug, message):
    assert message in refused("createworkspace", slug, owner="new@example.com")
    assert not User.objects.exists() and not Workspace.objects.exists()


def test_createworkspace_refuses_an_existing_slug(cast):
    assert "The slug 'acme' is taken" in refused("createworkspace", "acme", owner="new@example.com")
    assert not User.objects.filter(email="new@example.com").exists()


def test_createworkspace_argument_errors(db):
    assert "--owner" in refused("createworkspace", "acme")
    assert "invalid choice: 'gold'" in refused("createworkspace", "acme", "--owner", "a@example.com", "--plan", "gold")
    assert "not a valid email" in refused("createworkspace", "acme", owner="not-an-email")


# --- addmember ---------------------------------------------------------------------------


def test_addmember_adds_an_existing_and_a_new_account(cast):
    run("addmember", "acme", "dave@example.com", role="admin")
    out = run("addmember", "acme", "erin@example.com", role="member")
    assert Membership.objects.get(workspace=cast.acme, user=cast.dave).role == Role.ADMIN
    erin = User.objects.get(email="erin@example.com")
    assert Membership.objects.get(workspace=cast.acme, user=erin).role == Role.MEMBER
    assert not erin.has_usable_password() and "Forgot password" in out
    event = AuditEvent.objects.filter(workspace=cast.acme, action=Action.MEMBER_ADDED).order_by("seq").first()
    assert (event.actor_id, event.actor_repr, event.target_repr, event.metadata) == (
        None,
        "",
        "dave@example.com",
        {"role": "admin"},
    )


def test_addmember_errors(cast):
    assert "carol@example.com is already a member of acme" in refused(
        "addmember", "acme", "carol@example.com", role="admin"
    )
    assert Membership.objects.get(workspace=cast.acme, user=cast.carol).role == Role.MEMBER
    assert "No workspace with slug 'nope'" in refused("addmember", "nope", "dave@example.com", role="member")
    assert "--role" in refused("addmember", "acme", "dave@example.com")
    assert "invalid choice" in refused("addmember", "acme", "dave@example.com", role="boss")


# --- seed_demo ---------------------------------------------------------------------------


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (User, Workspace, Membership, GatewayToken, AuditEvent, ToolCall)
    }


def test_seed_demo_builds_a_demo_and_is_idempotent(db, monkeypatch):
    monkeypatch.delenv("MCPNEST_DEMO_PASSWORD", raising=False)
    out = run("seed_demo", wait=0)
    password = re.search(r"demo@mcpnest\.local with password: (\S+)", out).group(1)
    raw = re.search(r"\(shown once\): (mng_[0-9a-f]{48})", out).group(1)
    demo = User.objects.get(email="demo@mcpnest.local")
    assert demo.check_password(password) and demo.is_staff and demo.is_superuser
    workspace = Workspace.objects.get(slug="demo")
    assert workspace.enforcement == Enforcement.SHADOW
    roles = list(Membership.objects.filter(workspace=workspace).values_list("role", flat=True))
    assert all(roles.count(role) >= 2 for role in Role)
    assert token_verify(raw).user == demo
    assert GatewayToken.objects.filter(workspace=workspace, revoked_at__isnull=False).exists()
    assert ToolCall.objects.filter(workspace=workspace).count() == 50
    actions = set(AuditEvent.objects.filter(workspace=workspace).values_list("action", flat=True))
    assert {Action.WORKSPACE_CREATED, Action.MEMBER_ADDED, Action.TOKEN_CREATED, Action.TOKEN_REVOKED} <= actions
    assert Action.INSTANCE_DEPLOYED in actions  # the hosted notes server, with the process runtime
    assert all(isinstance(result, chain.ChainReport) for result in _verify(workspace))

    before = counts()
    again = run("seed_demo", wait=0)
    assert counts() == before
    assert "password" not in again and "mng_" not in again


def _verify(workspace):
    return [chain.verify_chain(c, model) for c, model in chain.iter_chains(workspace.pk)]


def test_seed_demo_takes_the_password_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("MCPNEST_DEMO_PASSWORD", "demo-password-from-env")
    out = run("seed_demo", wait=0)
    assert "demo-password-from-env" not in out and "MCPNEST_DEMO_PASSWORD" in out
    assert User.objects.get(email="demo@mcpnest.local").check_password("demo-password-from-env")


def test_seed_demo_promotes_an_existing_demo_account_and_keeps_its_password(db):
    UserFactory(email="demo@mcpnest.local")
    out = run("seed_demo", wait=0)
    demo = User.objects.get(email="demo@mcpnest.local")
    assert demo.is_staff and demo.is_superuser and "password" not in out
    assert demo.check_password("correct-horse-battery-staple")


def test_seed_demo_refuses_a_deleted_demo_workspace(db):
    run("seed_demo", wait=0)
    Workspace.objects.filter(slug="demo").update(deleted_at="2026-01-01T00:00:00Z")
    assert "was deleted" in refused("seed_demo", wait=0)
