"""The five MCP clients' config files as declared shapes, which of them a config looks like,
and what each server entry launches (a package, an image or a remote URL).

The shapes follow ``../shared/docs/client-configs.md``; each is a pydantic model that
forbids keys it does not know, so that an unknown key comes back from pydantic with its
path (the validator reports it as a warning: clients ignore such keys, silently). The top
level of Claude Desktop's and Claude Code's files holds other settings too, so there only
the server map is checked. Pure functions; no Django.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

CLAUDE_DESKTOP, CLAUDE_CODE, CURSOR, VSCODE, WINDSURF = "claude-desktop", "claude-code", "cursor", "vscode", "windsurf"
CLIENTS: dict[str, str] = {
    CLAUDE_DESKTOP: "Claude Desktop",
    CLAUDE_CODE: "Claude Code (.mcp.json)",
    CURSOR: "Cursor",
    VSCODE: "VS Code",
    WINDSURF: "Windsurf",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ClaudeDesktopEntry(_Strict):
    """Claude Desktop starts stdio servers only; remotes are connectors, not file entries."""

    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None


class ClaudeCodeEntry(_Strict):
    type: Literal["stdio", "http", "sse"] | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    headersHelper: str | None = None
    oauth: dict[str, Any] | None = None


class CursorEntry(_Strict):
    type: Literal["stdio", "http", "sse", "streamable-http"] | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    envFile: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    auth: dict[str, Any] | None = None


class VSCodeEntry(_Strict):
    type: Literal["stdio", "http", "sse"] | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str | int | None] | None = None  # VS Code accepts numbers and null here
    envFile: str | None = None
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    dev: dict[str, Any] | None = None


class VSCodeInput(_Strict):
    type: Literal["promptString", "pickString"]
    id: str
    description: str | None = None
    password: bool | None = None
    default: str | None = None
    options: list[str] | None = None


class WindsurfEntry(_Strict):
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    serverUrl: str | None = None
    url: str | None = None  # reportedly read too (client-configs.md: conflict)
    headers: dict[str, str] | None = None
    disabled: bool | None = None
    disabledTools: list[str] | None = None


class ClaudeDesktopConfig(_Open):
    mcpServers: dict[str, ClaudeDesktopEntry]


class ClaudeCodeConfig(_Open):
    mcpServers: dict[str, ClaudeCodeEntry]


class CursorConfig(_Open):
    mcpServers: dict[str, CursorEntry]


class VSCodeConfig(_Strict):
    servers: dict[str, VSCodeEntry]
    inputs: list[VSCodeInput] = []


class WindsurfConfig(_Open):
    mcpServers: dict[str, WindsurfEntry]


SHAPES: dict[str, type[BaseModel]] = {
    CLAUDE_DESKTOP: ClaudeDesktopConfig,
    CLAUDE_CODE: ClaudeCodeConfig,
    CURSOR: CursorConfig,
    VSCODE: VSCodeConfig,
    WINDSURF: WindsurfConfig,
}


def servers_key(client: str) -> str:
    return "servers" if client == VSCODE else "mcpServers"


def url_key(client: str) -> str:
    return "serverUrl" if client == WINDSURF else "url"


# Keys people carry over from another client's file, with what this client wants instead.
MISPLACED: dict[str, dict[str, str]] = {
    CLAUDE_DESKTOP: {
        "url": "Claude Desktop's file starts stdio servers only: add a remote as a custom connector "
        "(Settings > Connectors), or bridge it with `npx -y mcp-remote <url>`.",
        "type": "Claude Desktop's entries have no `type`: remove it.",
        "headers": "Claude Desktop's file takes no headers: pass them to mcp-remote with `--header`.",
        "serverUrl": "`serverUrl` is Windsurf's key; Claude Desktop starts stdio servers only.",
    },
    CLAUDE_CODE: {"serverUrl": "Claude Code reads `url` (with `type: http`), not Windsurf's `serverUrl`."},
    CURSOR: {"serverUrl": "Cursor reads `url`, not Windsurf's `serverUrl`."},
    VSCODE: {"serverUrl": "VS Code reads `url` (with `type: http`), not Windsurf's `serverUrl`."},
    WINDSURF: {"type": "Windsurf's entries have no `type`: it tells stdio from remote by `command` or `serverUrl`."},
}


@dataclass(frozen=True)
class Detection:
    client: str | None
    reason: str


_CLAUDE_CODE_VAR = re.compile(r"\$\{(?!env:|input:|userHome|workspaceFolder|pathSeparator|/)[A-Za-z_][A-Za-z0-9_]*")


def detect(config: Any) -> Detection:
    """Which client a parsed config is for, and why we think so."""
    if not isinstance(config, dict):
        return Detection(None, "the top level is not a JSON object")
    if "servers" in config and "mcpServers" not in config:
        return Detection(VSCODE, "looks like VS Code: top-level `servers`")
    servers = config.get("mcpServers")
    if not isinstance(servers, dict):
        return Detection(None, "no top-level `mcpServers` (Claude, Cursor, Windsurf) or `servers` (VS Code)")
    entries = [entry for entry in servers.values() if isinstance(entry, dict)]
    if any("serverUrl" in entry for entry in entries):
        return Detection(WINDSURF, "looks like Windsurf: an entry has `serverUrl`")
    text = repr(entries)
    if any("type" in entry for entry in entries) and (_CLAUDE_CODE_VAR.search(text) or "${env:" not in text):
        return Detection(CLAUDE_CODE, "looks like Claude Code's .mcp.json: `mcpServers` entries declare `type`")
    if "${env:" in text or any("url" in entry or "envFile" in entry for entry in entries):
        return Detection(CURSOR, "looks like Cursor: `mcpServers` with `${env:…}` placeholders or `url` entries")
    return Detection(CLAUDE_DESKTOP, "looks like Claude Desktop: `mcpServers` with stdio entries only")


def strip_jsonc(text: str) -> tuple[str, tuple[int, str] | None]:
    """JSONC (VS Code's mcp.json) as JSON: comments and trailing commas blanked out, newlines
    kept so that line and column still hold; and the offset and kind of the first one."""
    out = list(text)
    first: tuple[int, str] | None = None
    i, n, in_string = 0, len(text), False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif text.startswith("//", i) or text.startswith("/*", i):
            end = text.find("\n", i) if text[i + 1] == "/" else text.find("*/", i + 2)
            end = n if end == -1 else end + (0 if text[i + 1] == "/" else 2)
            first = first or (i, "a comment")
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        elif ch == ",":
            j = i + 1
            while j < n and (text[j].isspace() or text.startswith("//", j) or text.startswith("/*", j)):
                if text.startswith("//", j):
                    j = text.find("\n", j) if text.find("\n", j) != -1 else n
                elif text.startswith("/*", j):
                    j = text.find("*/", j) + 2 if text.find("*/", j) != -1 else n
                else:
                    j += 1
            if j < n and text[j] in "}]":
                first = first or (i, "a trailing comma")
                out[i] = " "
        i += 1
    return "".join(out), first


# --- what an entry launches --------------------------------------------------------------


@dataclass(frozen=True)
class PackageRef:
    """A package or image an entry starts: ``registry_type`` as in server.json (npm, pypi,
    oci, nuget), ``version`` empty when the config does not pin one."""

    registry_type: str
    identifier: str
    version: str
    arg_index: int  # which of ``args`` names it (for the JSON path)


# docker run options that take a value (the next argument) when not written as --opt=value.
_DOCKER_VALUE_OPTIONS = frozenset(
    [
        "-e",
        "--env",
        "--env-file",
        "-v",
        "--volume",
        "--mount",
        "-p",
        "--publish",
        "--name",
        "--network",
        "--net",
        "-u",
        "--user",
        "-w",
        "--workdir",
        "--entrypoint",
        "-l",
        "--label",
        "--add-host",
        "--cap-add",
        "--cap-drop",
        "--device",
        "--dns",
        "--hostname",
        "-h",
        "--ipc",
        "--pid",
        "--platform",
        "--pull",
        "--restart",
        "--runtime",
        "--security-opt",
        "--tmpfs",
        "--ulimit",
        "--memory",
        "-m",
        "--cpus",
        "--gpus",
        "--log-driver",
        "--log-opt",
        "--userns",
        "--uts",
        "--cgroupns",
        "--shm-size",
        "--expose",
        "--health-cmd",
    ]
)


def docker_run_parts(args: list[str]) -> tuple[list[tuple[str, str | None, int]], int | None]:
    """``docker run`` options as ``(option, value, index)`` and the image's index in ``args``."""
    options: list[tuple[str, str | None, int]] = []
    if not args or args[0] != "run":
        return options, None
    i = 1
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            return options, i
        if "=" in arg:
            name, value = arg.split("=", 1)
            options.append((name, value, i))
        elif arg in _DOCKER_VALUE_OPTIONS and i + 1 < len(args):
            options.append((arg, args[i + 1], i))
            i += 1
        else:
            options.append((arg, None, i))
        i += 1
    return options, None


def split_image(image: str) -> tuple[str, str]:
    """``ghcr.io/acme/app:1.2`` → (``ghcr.io/acme/app``, ``1.2``); a digest counts as the tag."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


def _npm_spec(spec: str) -> tuple[str, str]:
    at = spec.rfind("@")
    if at > 0:
        return spec[:at], spec[at + 1 :]
    return spec, ""


def _pypi_spec(spec: str) -> tuple[str, str]:
    for sep in ("==", "@"):
        if sep in spec:
            name, version = spec.split(sep, 1)
            return name.strip(), version.strip()
    return re.split(r"[<>=!~\[]", spec, maxsplit=1)[0], ""


def package_ref(command: str | None, args: list[str] | None) -> PackageRef | None:
    """The package an ``npx``/``uvx``/``docker run``/``dnx`` entry starts, as written."""
    args = list(args or [])
    launcher = (command or "").rsplit("/", 1)[-1].lower().removesuffix(".cmd").removesuffix(".exe")
    if launcher in ("cmd", "cmd.exe") and len(args) >= 2 and args[0].lower() == "/c":
        # Claude Code on native Windows: `cmd /c npx …` runs the same launcher.
        launcher, args = args[1].lower(), args[2:]
        offset = 2
    else:
        offset = 0
    if launcher == "docker":
        _, index = docker_run_parts(args)
        if index is None:
            return None
        name, tag = split_image(args[index])
        return PackageRef("oci", name, tag, index + offset)
    skip_next = {"npx": {"-p", "--package"}, "uvx": {"--from", "--with", "--python", "-p"}, "dnx": set()}
    if launcher not in ("npx", "uvx", "dnx"):
        return None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in skip_next[launcher]:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if launcher == "uvx":
            name, version = _pypi_spec(arg)
            return PackageRef("pypi", name, version, i + offset)
        name, version = _npm_spec(arg)
        return PackageRef("npm" if launcher == "npx" else "nuget", name, version, i + offset)
    return None
