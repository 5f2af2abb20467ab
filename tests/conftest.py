"""The cast: in workspace "acme", alice (Owner), bob (Admin) and carol (Member); in
workspace "globex", dave (Owner) — an outsider to acme."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pytest
from django.db import connection

from apps.accounts.models import User
from apps.hosting import runtimes
from apps.hosting.models import AllowedImage
from apps.rbac.access import Access, access_for
from apps.rbac.roles import Role
from apps.workspaces.models import Workspace
from tests.browser import browser  # noqa: F401 - the fixture, for every module that drives Chromium
from tests.factories import PASSWORD, MembershipFactory, UserFactory, WorkspaceFactory


@dataclass
class Cast:
    acme: Workspace
    globex: Workspace
    alice: User  # acme Owner
    bob: User  # acme Admin
    carol: User  # acme Member
    dave: User  # globex Owner, outsider to acme
    password: str = PASSWORD

    def access(self, user: User, workspace: Workspace | None = None) -> Access:
        return access_for(user=user, workspace=workspace or self.acme)


@pytest.fixture
def cast(db) -> Cast:
    acme = WorkspaceFactory(slug="acme", name="Acme")
    globex = WorkspaceFactory(slug="globex", name="Globex")
    alice = UserFactory(email="alice@example.com")
    bob = UserFactory(email="bob@example.com")
    carol = UserFactory(email="carol@example.com")
    dave = UserFactory(email="dave@example.com")
    MembershipFactory(workspace=acme, user=alice, role=Role.OWNER)
    MembershipFactory(workspace=acme, user=bob, role=Role.ADMIN)
    MembershipFactory(workspace=acme, user=carol, role=Role.MEMBER)
    MembershipFactory(workspace=globex, user=dave, role=Role.OWNER)
    return Cast(acme=acme, globex=globex, alice=alice, bob=bob, carol=carol, dave=dave)


def _redis_available() -> str | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return "REDIS_URL is not set (CI sets it to the machine's Redis)"
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"Redis at REDIS_URL is not reachable: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    redis_reason = _redis_available()
    for item in items:
        if "redis" in item.keywords and redis_reason:
            item.add_marker(pytest.mark.skip(reason=redis_reason))


@pytest.fixture
def client_for():
    """``client_for(user)``: a REST API client signed in as ``user`` (anonymous without one)."""
    from rest_framework.test import APIClient

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def require_postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)")


@pytest.fixture
def notes(db):
    """The hosted catalog's notes server, as its data migration seeds it (again here:
    transactional tests empty the tables)."""
    seeded = importlib.import_module("apps.hosting.migrations.0002_seed_notes").NOTES
    return AllowedImage.objects.get_or_create(slug="notes", defaults=seeded)[0]


@pytest.fixture(autouse=True)
def hosted_processes(tmp_path, monkeypatch):
    """Whatever a test deploys with the process runtime (the demo seeds one, say) runs under
    a runtime of the test's own and is stopped after it; nothing outlives the test."""
    runtime = runtimes.ProcessRuntime(log_dir=tmp_path / "hosted")
    monkeypatch.setattr(runtimes, "_process_runtime", runtime)
    yield runtime
    for pid in list(runtime._children):
        runtime.stop(str(pid))
