"""Allowlist rules are checked against the workspace's servers and their known tools, and
stored in one form, ``server:<upstream tool name>`` (issue #7, item 6)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.gateway.models import AllowRule, ToolPin, UpstreamServer
from apps.gateway.services import allowlist_set, server_add


@pytest.fixture
def servers(cast, upstream, django_capture_on_commit_callbacks):
    """In acme: "fix" (its 4 tools pinned), "tiny" with prefix "t_" (pinned too) and "wiki",
    a requested server never reached (no known tools)."""
    alice = cast.access(cast.alice)
    with django_capture_on_commit_callbacks(execute=True):  # their approvals' tasks, as after the commit
        fix = server_add(access=alice, slug="fix", url=upstream.url)
        tiny = server_add(access=alice, slug="tiny", url=upstream.url, prefix="t_")
    wiki = server_add(access=cast.access(cast.carol), slug="wiki", url="https://wiki.example.com/mcp")
    assert fix.pins.count() == tiny.pins.count() == 4
    return fix, tiny, wiki


def _set(cast, *rules: str):
    return allowlist_set(access=cast.access(cast.alice), member=cast.carol, rules=list(rules))


def _stored(cast) -> list[str]:
    return [str(rule) for rule in AllowRule.objects.filter(user=cast.carol)]


def test_a_rule_must_name_a_server_of_the_workspace(cast, servers):
    with pytest.raises(RuleViolation) as refused:
        _set(cast, "fix:echo", "nosuchserver:x")
    assert str(refused.value) == "Rule 'nosuchserver:x' names no server of acme (its servers: fix, tiny, wiki)."
    assert not AllowRule.objects.exists() and not AuditEvent.objects.filter(action=Action.ALLOWLIST_CHANGED).exists()


def test_a_rule_must_name_a_tool_the_server_offers(cast, servers):
    with pytest.raises(RuleViolation) as refused:
        _set(cast, "tiny:nonexistent_tool")
    assert str(refused.value) == (
        "Rule 'tiny:nonexistent_tool': server tiny offers no tool 'nonexistent_tool' "
        "(its tools: add, echo, fail, slow)."
    )
    assert not AllowRule.objects.exists()


def test_upstream_and_client_visible_names_are_stored_as_the_upstream_name(cast, servers):
    # A pinned tool the gateway has seen but not approved yet is a known tool too.
    fix, _, _ = servers
    ToolPin.objects.create(
        server=fix, tool_name="read_file", fingerprint="", definition={}, pending_fingerprint="f" * 64
    )
    saved = _set(cast, "tiny:t_echo", "tiny:echo", "fix:fix__add", "fix:read_file", "tiny:*")
    assert list(saved) == ["fix:add", "fix:read_file", "tiny:*", "tiny:echo"] and saved.warnings == []
    assert _stored(cast) == list(saved)
    event = AuditEvent.objects.get(action=Action.ALLOWLIST_CHANGED)
    assert event.metadata == {"before": [], "after": list(saved)}


def test_a_server_with_no_known_tools_takes_any_name_with_a_warning(cast, servers):
    saved = _set(cast, "wiki:search", "wiki:*", "fix:echo")
    assert list(saved) == ["fix:echo", "wiki:*", "wiki:search"]
    assert saved.warnings == [
        "Server wiki has no known tools yet (it has not been reached): rule wiki:search is saved as written, unchecked."
    ]


def test_a_workspace_without_servers_says_so(cast):
    with pytest.raises(RuleViolation, match=r"names no server of acme \(its servers: none yet\)"):
        _set(cast, "fix:*")


def test_allowtools_refuses_unknown_servers_and_tools_and_prints_warnings(cast, servers):
    with pytest.raises(CommandError, match="Rule 'tiny:nonexistent_tool': server tiny offers no tool"):
        call_command("allowtools", "acme", "carol@example.com", "tiny:nonexistent_tool", "nosuchserver:x")
    with pytest.raises(CommandError, match="Rule 'nosuchserver:x' names no server of acme"):
        call_command("allowtools", "acme", "carol@example.com", "nosuchserver:x")
    assert not AllowRule.objects.exists()
    out, err = StringIO(), StringIO()
    call_command("allowtools", "acme", "carol@example.com", "tiny:t_add", "wiki:search", stdout=out, stderr=err)
    assert out.getvalue() == "carol@example.com in acme: tiny:add, wiki:search\n"
    assert "Warning: Server wiki has no known tools yet" in err.getvalue()
    assert UpstreamServer.objects.count() == 3
