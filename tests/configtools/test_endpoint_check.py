"""The validator's endpoint check against a real MCP server (the official SDK's, served over
Streamable HTTP on 127.0.0.1): refused by default, as every private target is, with the
reason; allowed when the operator allows private targets, and then initialize succeeds."""

from __future__ import annotations

import json
import socket

import pytest

from apps.configtools import validator
from tests.gateway.upstream import running
from tests.local_http import LocalServer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def mcp_server():
    with running() as server:
        yield server


@pytest.fixture
def allow_private(settings):
    settings.MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS = True


def test_a_loopback_server_is_refused_by_default_with_the_reason(mcp_server, settings):
    assert not getattr(settings, "MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS", False)
    result = validator.check_endpoint(mcp_server.url)
    assert not result.ok
    assert result.message.startswith("Refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address")
    assert "MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS" in result.message


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://localhost:9/mcp", "loopback"),
        ("http://[::1]:9/mcp", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/mcp", "private"),
        ("https://192.168.0.10/mcp", "private"),
        ("http://[::ffff:127.0.0.1]/mcp", "loopback"),
        ("http://0.0.0.0:8000/mcp", "unspecified"),
        ("http://100.64.0.1/mcp", "reserved or non-public"),
    ],
)
def test_private_targets_are_refused_before_any_connection(url, kind):
    result = validator.check_endpoint(url)
    assert not result.ok and f", a {kind} address" in result.message


def test_an_allowed_private_target_answers_initialize(mcp_server, allow_private):
    result = validator.check_endpoint(mcp_server.url, path="$.servers.local.url")
    assert result.ok, result.message
    assert (result.server, result.path) == ("fixture 1.0", "$.servers.local.url")
    assert result.protocol_version
    assert result.message.startswith("MCP server answered initialize in ")


def test_the_validator_checks_each_remote_when_asked(mcp_server, allow_private):
    config = {
        "mcpServers": {"local": {"type": "http", "url": mcp_server.url}, "cli": {"type": "stdio", "command": "true"}}
    }
    report = validator.validate(json.dumps(config), client="claude-code", check_endpoints=True)
    assert [(e.path, e.ok, e.server) for e in report.endpoints] == [("$.mcpServers.local.url", True, "fixture 1.0")]
    assert validator.validate(json.dumps(config), client="claude-code").endpoints == []


class _NotMcp(LocalServer):
    """A web server, not an MCP one: 404 with an HTML page."""

    def respond(self, method, url, headers, body):
        return 404, {"Content-Type": "text/html"}, b"<html>hello</html>"


def test_a_server_that_is_not_mcp_or_does_not_answer_is_reported(allow_private):
    with _NotMcp() as web:
        result = validator.check_endpoint(f"{web.url}/mcp")
    assert not result.ok and result.message.startswith("HTTP 404 Not Found to initialize")
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        result = validator.check_endpoint(f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", timeout=0.3)
    assert (result.ok, result.message) == (False, "No MCP answer: timed out.")


def test_urls_that_cannot_be_checked_say_why():
    assert "placeholder" in validator.check_endpoint("https://${env:HOST}/mcp").message
    assert "Only http(s)" in validator.check_endpoint("ftp://example.com/mcp").message
    assert "does not resolve" in validator.check_endpoint("https://no-such-host.invalid/mcp").message


def test_the_checks_of_one_config_share_a_time_budget(monkeypatch):
    monkeypatch.setattr(validator, "ENDPOINT_BUDGET", -1.0)
    config = {"mcpServers": {"a": {"url": "http://10.0.0.1/mcp"}, "b": {"url": "http://10.0.0.2/mcp"}}}
    report = validator.validate(json.dumps(config), client="cursor", check_endpoints=True)
    assert [e.message for e in report.endpoints] == ["Not checked: the -1 s budget ran out."] * 2
