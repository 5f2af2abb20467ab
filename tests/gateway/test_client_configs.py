"""Client configurations for the Connect page: valid JSON with each client's own keys."""

from __future__ import annotations

import json
import shlex

import pytest

from apps.gateway import client_configs

URL = "https://nest.example.com/api/gw/acme"
BEARER = "Bearer mng_YOUR_TOKEN"


def test_claude_desktop_bridges_through_mcp_remote_with_the_header_in_env():
    config = json.loads(client_configs.claude_desktop("acme", URL))
    assert config == {
        "mcpServers": {
            "acme": {
                "command": "npx",
                "args": ["-y", "mcp-remote@0.15.1", URL, "--header", "Authorization:${AUTH_HEADER}"],
                "env": {"AUTH_HEADER": BEARER},
            }
        }
    }


def test_claude_desktop_allows_plain_http_only_when_the_url_needs_it():
    args = json.loads(client_configs.claude_desktop("acme", "http://localhost:8000/api/gw/acme"))["mcpServers"]["acme"]
    assert args["args"][-1] == "--allow-http"


def test_cursor():
    assert json.loads(client_configs.cursor("acme", URL)) == {
        "mcpServers": {"acme": {"url": URL, "headers": {"Authorization": BEARER}}}
    }


def test_vscode_uses_servers_and_a_type():
    assert json.loads(client_configs.vscode("acme", URL)) == {
        "servers": {"acme": {"type": "http", "url": URL, "headers": {"Authorization": BEARER}}}
    }


def test_windsurf_calls_it_server_url():
    assert json.loads(client_configs.windsurf("acme", URL)) == {
        "mcpServers": {"acme": {"serverUrl": URL, "headers": {"Authorization": BEARER}}}
    }


def test_claude_code_is_one_shell_command():
    command = client_configs.claude_code("acme", URL)
    assert shlex.split(command) == [
        "claude", "mcp", "add", "--transport", "http", "acme", URL, "--header", f"Authorization: {BEARER}"
    ]  # fmt: skip


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value]


@pytest.mark.parametrize("url", [URL, 'https://x.example.com/gw/"quoted"?a=1&b=<2>'])
def test_every_json_config_escapes_what_it_embeds(url):
    for config in client_configs.all_configs("acme", url):
        if config.language == "json":
            assert url in _strings(json.loads(config.text)), config.client
        else:
            assert url in shlex.split(config.text)
    assert [c.key for c in client_configs.all_configs("acme", url)] == [
        "claude-desktop",
        "claude-code",
        "cursor",
        "vscode",
        "windsurf",
    ]
