"""The composer: several marketplace servers in one config per client.

Each server's entry is what ``apps.marketplace.configs`` gives for it (its first way to run,
every variable a placeholder in the client's own syntax); the composer only merges the
entries into one file per client and, where the user renamed a variable's placeholder (two
servers that both read ``API_KEY``, say), respells that placeholder. It never holds a value:
a placeholder is a variable's *name*, and anything that looks like a secret is refused.

Pure functions; no Django (the error is the project's ``RuleViolation``, a plain exception).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apps.configtools import scanner
from apps.core.errors import RuleViolation
from apps.marketplace import configs
from apps.marketplace.configs import CLIENTS, InstallConfigs

# A placeholder names the environment variable (or VS Code input) the value will come from.
# Upper case only: real tokens almost always mix cases, so this alone refuses most of them.
PLACEHOLDER = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# How people write a placeholder they copied from a config: ${NAME}, ${env:NAME}, <NAME>, {NAME}.
_WRAPPED = re.compile(r"^(?:\$\{(?:env:)?(?P<a>[^}]*)\}|<(?P<b>[^>]*)>|\{(?P<c>[^}]*)\})$")
# Prefixes of well-known credentials (GitHub, OpenAI/Anthropic, Slack, AWS, GitLab, Stripe, Google).
_SECRET_PREFIXES = re.compile(
    r"^(gh[pousr]_|github_pat_|sk-|sk_(live|test)_|rk_(live|test)_|xox[abposr]-|AKIA|ASIA|glpat-|AIza|ya29\.)",
    re.IGNORECASE,
)
MAX_SERVERS = 20


class CompositionError(RuleViolation):
    """The composition cannot be made: an unknown server or variable, or a value that is not
    a placeholder. The message says which, and never repeats the value."""


@dataclass(frozen=True)
class ComposedServer:
    """One server in a composition: its registry document and the placeholders chosen for its
    variables (a variable left out keeps its own name)."""

    name: str
    document: dict[str, Any]
    variables: dict[str, str] = field(default_factory=dict)


def looks_like_secret(value: str) -> bool:
    """A value somebody pasted instead of a name: a known credential prefix, what the scanner
    calls a plaintext secret, or a long run of letters mixed with digits (a key, a hash) that
    no variable name has."""
    if _SECRET_PREFIXES.match(value) or scanner.secret_in(value, named_secret=True):
        return True
    return any(len(part) >= 16 and re.search(r"\d", part) for part in re.split(r"[_\W]+", value))


def placeholder(value: str, *, variable: str) -> str:
    """The placeholder name in ``value`` (its wrapping stripped), or ``CompositionError``."""
    text = value.strip()
    if not text:
        return variable
    wrapped = _WRAPPED.match(text)
    if wrapped:
        text = next(group for group in wrapped.groups() if group is not None).strip()
    if text == variable:
        return text  # the registry's own name for it (some are lower case: {smithery_api_key})
    if looks_like_secret(text) or not PLACEHOLDER.fullmatch(text):
        raise CompositionError(
            f"{variable}: give a placeholder name such as {variable} (upper case, digits and _), "
            "never the value itself: the composition is shared, and a config holds no secret."
        )
    return text


def declared_variables(document: dict[str, Any]) -> list[configs.Variable]:
    """The variables the server's first way to run reads: its environment, its headers', and
    the ``{hint}`` placeholders of its arguments."""
    found = configs.launches(document)
    if not found:
        return []
    launch = found[0]
    variables = launch.all_variables()
    known = {var.name for var in variables}
    for arg in launch.args:
        for name in configs.PLACEHOLDER.findall(arg):
            if name not in known:
                known.add(name)
                variables.append(configs.Variable(name=name, description="Command-line argument", required=True))
    return variables


# Each client's placeholder for a variable name, as apps.marketplace.configs spells it.
_STYLES: dict[str, str] = {
    "claude-desktop": "<{}>",
    "claude-code": "${{{}}}",
    "cursor": "${{env:{}}}",
    "windsurf": "${{env:{}}}",
}


def _vscode_input(name: str) -> str:
    return configs.input_id(name)


def _respell(value: Any, renames: dict[str, str]) -> Any:
    """Every string in ``value`` (not the keys: those are the server's own variable names)
    with each old placeholder replaced by its new one."""
    if isinstance(value, str):
        if not renames:
            return value
        # One pass, so that swapping two placeholders does not rename one of them twice.
        pattern = "|".join(re.escape(old) for old in sorted(renames, key=len, reverse=True))
        return re.sub(pattern, lambda m: renames[m.group(0)], value)
    if isinstance(value, list):
        return [_respell(item, renames) for item in value]
    if isinstance(value, dict):
        return {key: _respell(item, renames) for key, item in value.items()}
    return value


def _renames(client: str, variables: dict[str, str]) -> dict[str, str]:
    changed = {old: new for old, new in variables.items() if old != new}
    if client == "vscode":
        return {
            "${input:" + _vscode_input(old) + "}": "${input:" + _vscode_input(new) + "}" for old, new in changed.items()
        }
    style = _STYLES[client]
    return {style.format(old): style.format(new) for old, new in changed.items()}


def _entries(installed: InstallConfigs) -> dict[str, dict[str, Any]]:
    key = installed.launch.key
    return {
        "claude-desktop": installed.claude_desktop["mcpServers"][key],
        "claude-code": installed.claude_code_json["mcpServers"][key],
        "cursor": installed.cursor["mcpServers"][key],
        "vscode": installed.vscode["servers"][key],
        "windsurf": installed.windsurf["mcpServers"][key],
    }


def _unique_key(key: str, taken: set[str]) -> str:
    candidate, n = key, 2
    while candidate in taken:
        candidate, n = f"{key}-{n}", n + 1
    taken.add(candidate)
    return candidate


def compose(servers: list[ComposedServer]) -> dict[str, dict[str, Any]]:
    """One config per client (``configs.CLIENTS``) holding every server's entry: Claude
    Desktop's ``claude_desktop_config.json``, Claude Code's ``.mcp.json``, Cursor's
    ``mcp.json``, VS Code's ``.vscode/mcp.json`` (inputs merged, one prompt per placeholder)
    and Windsurf's ``mcp_config.json``. Two servers with the same entry key get ``-2``…"""
    if len(servers) > MAX_SERVERS:
        raise CompositionError(f"At most {MAX_SERVERS} servers in one composition.")
    merged: dict[str, dict[str, Any]] = {client: {} for client in CLIENTS}
    inputs: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for server in servers:
        try:
            installed = configs.install_configs(server.document)
        except configs.NoLaunch as exc:
            raise CompositionError(f"{server.name} has no package a client can start and no remote URL.") from exc
        declared = {var.name for var in declared_variables(server.document)}
        unknown = sorted(set(server.variables) - declared)
        if unknown:
            raise CompositionError(f"{server.name} declares no variable named {', '.join(unknown)}.")
        names = {name: placeholder(value, variable=name) for name, value in server.variables.items()}
        key = _unique_key(installed.launch.key, taken)
        for client, entry in _entries(installed).items():
            merged[client][key] = _respell(entry, _renames(client, names))
        for prompt in installed.vscode.get("inputs", []):
            original = next(
                (name for name in declared if _vscode_input(name) == prompt["id"]),
                None,
            )
            new_id = _vscode_input(names.get(original, original)) if original else prompt["id"]
            # One prompt per placeholder: two servers sharing a placeholder share its value.
            inputs.setdefault(new_id, {**prompt, "id": new_id})
    out: dict[str, dict[str, Any]] = {}
    for client in CLIENTS:
        if client == "vscode":
            out[client] = (
                {"inputs": list(inputs.values()), "servers": merged[client]} if inputs else {"servers": merged[client]}
            )
        else:
            out[client] = {"mcpServers": merged[client]}
    return out


# Where each client reads the composed file from (../shared/docs/client-configs.md).
CONFIG_FILES = {
    "claude-desktop": "claude_desktop_config.json",
    "claude-code": ".mcp.json (in the project)",
    "cursor": "~/.cursor/mcp.json or .cursor/mcp.json",
    "vscode": ".vscode/mcp.json",
    "windsurf": "~/.codeium/windsurf/mcp_config.json",
}
CLIENT_LABELS = {
    "claude-desktop": "Claude Desktop",
    "claude-code": "Claude Code",
    "cursor": "Cursor",
    "vscode": "VS Code",
    "windsurf": "Windsurf",
}
