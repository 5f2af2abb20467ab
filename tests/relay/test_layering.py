"""relay is the Django-free gateway runtime: nothing in it may import Django or a project app,
and it runs on hooks of plain Python (what bridge/ and these tests give it)."""

from __future__ import annotations

import ast
import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from relay.config import Enforcement, Hooks, Settings, TokenInfo, WorkspaceConfig
from relay.gateway import Gateway

RELAY = Path(__file__).resolve().parents[2] / "relay"
FORBIDDEN = ("django", "apps", "mcpnest", "rest_framework", "channels", "celery")


def test_relay_imports_neither_django_nor_the_project():
    offending = []
    for path in sorted(RELAY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [f"{path.name}: {name}" for name in names if name.split(".")[0] in FORBIDDEN]
    assert not offending, offending


def test_a_gateway_runs_on_plain_python_hooks_and_stops_with_its_rows_written(tmp_path):
    raw = "mng_" + "ab" * 24
    token = TokenInfo(
        id=7, workspace_id=1, kind="member", user_id=3, email="m@example.com", prefix=raw[:12],
        expires_at=None, last_used_at=None,
    )  # fmt: skip
    workspace = WorkspaceConfig(
        id=1, slug="w", name="W", enforcement=Enforcement.OFF, deny_by_default=False, rate_limit_per_minute=60,
        servers=(), rules={}, pins={}, member_ids=frozenset({3}),
    )  # fmt: skip
    recorded, used = [], {}
    hooks = Hooks(
        load_token=lambda digest: token if digest == hashlib.sha256(raw.encode()).hexdigest() else None,
        load_workspace=lambda slug: workspace if slug == "w" else None,
        read_changes=lambda since: (datetime.now(UTC), {}),
        record_calls=recorded.extend,
        note_token_use=used.update,
        observe_pin=lambda **kwargs: None,
        mark_unhealthy=lambda **kwargs: None,
    )
    gateway = Gateway(settings=Settings(spool_dir=tmp_path), hooks=hooks)

    async def serve():
        gateway.start()
        assert await gateway.snapshots.token(raw) == token
        assert await gateway.snapshots.token("mng_" + "cd" * 24) is None
        assert await gateway.snapshots.workspace("w") == workspace
        gateway.recorder.record({"record_id": "r1", "workspace_id": 1})
        gateway.recorder.touch(token.id)
        await gateway.stop()

    asyncio.run(serve())
    assert recorded == [{"record_id": "r1", "workspace_id": 1}]
    assert set(used) == {7}
    assert not list(tmp_path.rglob("*.jsonl"))  # written, so the spool is empty
