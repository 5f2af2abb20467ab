"""Ready-to-paste MCP client configurations for a workspace's gateway.

One function per client; each returns the text to paste (JSON built with ``json.dumps``,
so names and URLs are always correctly escaped). The token is a placeholder: the portal
never puts a real token into a page other than the one that issued it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TOKEN_PLACEHOLDER = "mng_YOUR_TOKEN"  # noqa: S105 - a placeholder the user replaces, not a secret
BEARER = f"Bearer {TOKEN_PLACEHOLDER}"


def _dump(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


# The stdio bridge Claude Desktop reaches a remote server through, pinned like any package
# (the marketplace's configs use it too).
MCP_REMOTE = "mcp-remote@0.15.1"


def claude_desktop(slug: str, url: str) -> str:
    """claude_desktop_config.json: Claude Desktop starts local servers only, so it runs
    ``npx mcp-remote`` as a bridge to the gateway.

    The header goes through an environment variable because Claude Desktop (and Cursor on
    Windows) split arguments on spaces, which breaks "Authorization: Bearer …" in ``args``.
    """
    args = ["-y", MCP_REMOTE, url, "--header", "Authorization:${AUTH_HEADER}"]
    if urlsplit(url).scheme == "http":
        args.append("--allow-http")  # mcp-remote refuses plain HTTP to anything but localhost otherwise
    return _dump({"mcpServers": {slug: {"command": "npx", "args": args, "env": {"AUTH_HEADER": BEARER}}}})


def cursor(slug: str, url: str) -> str:
    """~/.cursor/mcp.json (or .cursor/mcp.json in a project)."""
    return _dump({"mcpServers": {slug: {"url": url, "headers": {"Authorization": BEARER}}}})


def vscode(slug: str, url: str) -> str:
    """.vscode/mcp.json: VS Code names the key "servers" and wants the transport type."""
    return _dump({"servers": {slug: {"type": "http", "url": url, "headers": {"Authorization": BEARER}}}})


def windsurf(slug: str, url: str) -> str:
    """~/.codeium/windsurf/mcp_config.json: Windsurf calls the URL "serverUrl"."""
    return _dump({"mcpServers": {slug: {"serverUrl": url, "headers": {"Authorization": BEARER}}}})


def claude_code(slug: str, url: str) -> str:
    """A shell command for Claude Code's CLI."""
    return (
        f'claude mcp add --transport http {shlex.quote(slug)} {shlex.quote(url)} --header "Authorization: {BEARER}"\n'
    )


@dataclass(frozen=True)
class ClientConfig:
    key: str  # an HTML id fragment
    client: str
    where: str  # the file to paste into, or where to run it
    text: str
    language: str  # "json" or "shell"


def all_configs(slug: str, url: str) -> list[ClientConfig]:
    """Every client's configuration, in the order the Connect page shows them."""
    return [
        ClientConfig(
            "claude-desktop", "Claude Desktop", "claude_desktop_config.json", claude_desktop(slug, url), "json"
        ),
        ClientConfig("claude-code", "Claude Code", "a terminal", claude_code(slug, url), "shell"),
        ClientConfig("cursor", "Cursor", "~/.cursor/mcp.json", cursor(slug, url), "json"),
        ClientConfig("vscode", "VS Code", ".vscode/mcp.json", vscode(slug, url), "json"),
        ClientConfig("windsurf", "Windsurf", "~/.codeium/windsurf/mcp_config.json", windsurf(slug, url), "json"),
    ]
