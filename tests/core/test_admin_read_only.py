"""Read-only admin behaviour is written once (``ReadOnlyAdminMixin``) and holds everywhere:
no add, change or delete for anyone, superusers included, while viewing still works."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from apps.accounts.models import ApiKey, User
from apps.audit.models import AuditChain, AuditCheckpoint, AuditEvent, ToolCall
from apps.core.admin import ReadOnlyAdminMixin
from apps.gateway.models import AllowRule, ToolPin
from apps.hosting.models import Instance
from apps.marketplace.models import IndexRun, Install, Publisher, Repository
from apps.oauth.models import Connection
from apps.scim.models import ScimIdentity
from apps.tokens.models import GatewayToken
from apps.workspaces.models import Invitation, Workspace
from tests.factories import UserFactory

APPS = Path(__file__).resolve().parents[2] / "apps"
READ_ONLY = {
    AuditEvent,
    ToolCall,
    AuditChain,
    AuditCheckpoint,
    AllowRule,
    ToolPin,
    GatewayToken,
    ApiKey,
    Invitation,
    Instance,
    IndexRun,
    Install,
    Publisher,
    Repository,
    Connection,
    ScimIdentity,
}
PERMISSIONS = ("has_add_permission", "has_change_permission", "has_delete_permission")


@pytest.fixture
def root(db) -> User:
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


def test_exactly_these_admins_are_read_only():
    read_only = {
        model for model, model_admin in admin.site._registry.items() if isinstance(model_admin, ReadOnlyAdminMixin)
    }
    assert read_only == READ_ONLY


@pytest.mark.parametrize("model", sorted(READ_ONLY, key=lambda model: model._meta.label), ids=lambda m: m._meta.label)
def test_a_superuser_may_view_but_not_add_change_or_delete(model, root, client):
    request = RequestFactory().get("/")
    request.user = root
    model_admin = admin.site._registry[model]
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    client.force_login(root)
    opts = model._meta
    assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403


def test_membership_inlines_are_read_only_too(root):
    request = RequestFactory().get("/")
    request.user = root
    for parent in (Workspace, User):
        (inline,) = [i for i in admin.site._registry[parent].get_inline_instances(request, obj=parent())]
        assert isinstance(inline, ReadOnlyAdminMixin)
        assert not any(getattr(inline, name)(request, None) for name in PERMISSIONS)


def test_no_admin_writes_read_only_behaviour_by_hand():
    """A class that refuses add, change and delete itself should use the mixin instead."""
    by_hand = []
    for path in sorted(APPS.rglob("admin.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name != "ReadOnlyAdminMixin":
                methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
                if set(PERMISSIONS) <= methods:
                    by_hand.append(f"{path.relative_to(APPS)}: {node.name}")
    assert by_hand == []
