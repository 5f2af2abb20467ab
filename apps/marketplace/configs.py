"""Install configs for each MCP client, generated from a server.json (current shape).

One ``Launch`` is worked out from the server.json first, the client-independent part: a
package (npm → ``npx``, pypi → ``uvx``, oci → ``docker run``, nuget → ``dnx``) with its
runtime and package arguments and environment variables, or a remote (streamable-http or
sse) with its headers. Then each client gets its own spelling of it
(``../shared/docs/client-configs.md`` has each client's format, placeholders and links):

* Claude Desktop: ``mcpServers`` (stdio only; a remote goes through ``mcp-remote``);
* Claude Code: ``claude mcp add …`` and the ``.mcp.json`` entry, ``${VAR}`` placeholders;
* Cursor: ``mcp.json`` with ``${env:VAR}`` and the ``cursor://`` install deeplink;
* VS Code: ``.vscode/mcp.json`` with ``inputs`` (secrets prompted, stored by VS Code) and the
  ``vscode:mcp/install`` URL;
* Windsurf: ``mcp_config.json`` (``serverUrl`` for remotes), ``${env:VAR}``.

Values are never filled in: every variable and secret header is a placeholder (the client
asks for it or reads it from the environment), so a config can be shared and copied safely.
Pure functions; no Django.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from apps.gateway.client_configs import MCP_REMOTE

CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode", "windsurf")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REMOTE_TYPES = ("streamable-http", "sse")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass(frozen=True)
class Variable:
    name: str
    description: str = ""
    secret: bool = False
    required: bool = False


@dataclass(frozen=True)
class Launch:
    """How a client starts (or reaches) the server, whichever client it is."""

    key: str  # the entry's name in the client's config
    command: str = ""  # stdio
    args: tuple[str, ...] = ()
    env: tuple[Variable, ...] = ()
    url: str = ""  # remote
    transport: str = "stdio"  # stdio | streamable-http | sse
    headers: tuple[tuple[str, str], ...] = ()  # name, value with {VAR} placeholders
    variables: tuple[Variable, ...] = field(default_factory=tuple)  # those the headers/args name

    @property
    def remote(self) -> bool:
        return bool(self.url)

    def all_variables(self) -> list[Variable]:
        seen, out = set(), []
        for var in (*self.env, *self.variables):
            if var.name not in seen:
                seen.add(var.name)
                out.append(var)
        return out


class NoLaunch(ValueError):
    """The server.json says neither a package a client can start nor a remote URL."""


def entry_key(name: str) -> str:
    """``io.github.acme/weather-mcp`` → ``weather-mcp``: a config key every client accepts."""
    key = re.sub(r"[^A-Za-z0-9_-]+", "-", name.rsplit("/", 1)[-1]).strip("-")
    return key[:60] or "mcp-server"


def _variables(items: Any) -> tuple[Variable, ...]:
    out = []
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and ENV_NAME.fullmatch(item["name"]):
            out.append(
                Variable(
                    name=item["name"],
                    description=str(item.get("description") or "")[:300],
                    secret=bool(item.get("isSecret")),
                    required=bool(item.get("isRequired")),
                )
            )
    return tuple(out)


def _arguments(items: Any) -> list[str]:
    """Runtime or package arguments: ``named`` → ``--flag value``; positional values as given;
    a positional without a value becomes a ``{hint}`` placeholder."""
    args: list[str] = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        value = item.get("value") if isinstance(item.get("value"), str) else item.get("default")
        if item.get("type") == "named" and isinstance(item.get("name"), str):
            args.append(item["name"])
            if isinstance(value, str) and value:
                args.append(value)
        elif isinstance(value, str) and value:
            args.append(value)
        elif isinstance(item.get("valueHint"), str):
            args.append("{" + re.sub(r"[^A-Za-z0-9_]", "_", item["valueHint"]) + "}")
    return args


def _package_launch(key: str, package: dict[str, Any]) -> Launch | None:
    kind, identifier = package.get("registryType"), package.get("identifier")
    version = package.get("version") if isinstance(package.get("version"), str) else ""
    transport = (package.get("transport") or {}).get("type") or "stdio"
    if not isinstance(identifier, str) or not identifier or transport != "stdio":
        return None
    pinned = version and version != "latest"
    env = _variables(package.get("environmentVariables"))
    runtime_args = _arguments(package.get("runtimeArguments"))
    package_args = _arguments(package.get("packageArguments"))
    if kind == "npm":
        command, args = "npx", ["-y", *runtime_args, f"{identifier}@{version}" if pinned else identifier]
    elif kind == "pypi":
        command, args = "uvx", [*runtime_args, f"{identifier}=={version}" if pinned else identifier]
    elif kind == "oci":
        env_flags = [flag for var in env for flag in ("-e", var.name)]
        command, args = (
            "docker",
            ["run", "-i", "--rm", *env_flags, *_docker_extra(runtime_args, identifier, env), identifier],
        )
    elif kind == "nuget":
        command, args = "dnx", [f"{identifier}@{version}" if pinned else identifier, "--yes", *runtime_args]
        if package_args:
            args.append("--")
    else:
        return None
    args = [*args, *package_args]
    # Argument placeholders ({hint}, or {var} inside a value) are variables the user fills,
    # like the environment's: every client then declares or prompts for them.
    named = {var.name for var in env}
    hinted = dict.fromkeys(name for arg in args for name in PLACEHOLDER.findall(arg) if name not in named)
    variables = tuple(Variable(name=name, description=f"{name} argument", required=True) for name in hinted)
    return Launch(key=key, command=command, args=tuple(args), env=env, variables=variables)


def _docker_extra(runtime_args: list[str], identifier: str, env: tuple[Variable, ...]) -> list[str]:
    """Some entries give the whole ``docker run -i --rm -e VAR image`` as runtime arguments;
    keep only what the launch does not already say (its flags, its ``-e``, its image)."""
    if not runtime_args or runtime_args[0] != "run":
        return runtime_args
    image = identifier.split("@", 1)[0].rsplit(":", 1)[0] if "/" in identifier or ":" in identifier else identifier
    names = {var.name for var in env}
    extra, items = [], iter(runtime_args[1:])
    for arg in items:
        if arg in ("-i", "--interactive", "--rm") or arg in (identifier, image):
            continue
        if arg in ("-e", "--env"):
            value = next(items, "")
            if value not in names:
                extra += [arg, value]
            continue
        extra.append(arg)
    return extra


def _remote_launch(key: str, remote: dict[str, Any]) -> Launch | None:
    url, kind = remote.get("url"), remote.get("type")
    if (
        not isinstance(url, str)
        or not url.startswith(("https://", "http://"))
        or kind not in ("streamable-http", "sse")
    ):
        return None
    headers, variables = [], []
    for header in remote.get("headers") or []:
        if not isinstance(header, dict) or not isinstance(header.get("name"), str):
            continue
        value = header.get("value") if isinstance(header.get("value"), str) else ""
        if header.get("isSecret") or not value:
            # A secret is never written down: the whole value comes from a variable.
            var = re.sub(r"[^A-Za-z0-9]+", "_", header["name"]).strip("_").upper() or "HEADER"
            value = value if PLACEHOLDER.search(value) else "{" + var + "}"
        # {mia-platform-client-id} is no shell variable name: {mia_platform_client_id} is.
        value = PLACEHOLDER.sub(lambda m: "{" + m.group(1).replace("-", "_") + "}", value)
        headers.append((header["name"], value))
        for name in PLACEHOLDER.findall(value):
            variables.append(
                Variable(
                    name=name,
                    description=str(header.get("description") or f"{header['name']} header")[:300],
                    secret=bool(header.get("isSecret")),
                    required=True,
                )
            )
    return Launch(key=key, url=url, transport=kind, headers=tuple(headers), variables=tuple(variables))


def with_values(text: str, values: dict[str, str]) -> str:
    """``{VAR}`` placeholders replaced by the values given (a header to store, encrypted)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)


def launches(document: dict[str, Any]) -> list[Launch]:
    """Every way to run the server, packages first (in order), then remotes."""
    key = entry_key(str(document.get("name") or ""))
    found = [
        launch
        for package in document.get("packages") or []
        if isinstance(package, dict) and (launch := _package_launch(key, package))
    ]
    found += [
        launch
        for remote in document.get("remotes") or []
        if isinstance(remote, dict) and (launch := _remote_launch(key, remote))
    ]
    return found


# --- each client's spelling ----------------------------------------------------------------


def _fill(text: str, style: str) -> str:
    """``{VAR}`` (the registry's placeholder) in the client's own placeholder syntax."""
    return PLACEHOLDER.sub(lambda m: style.format(m.group(1)), text)


def _stdio_entry(launch: Launch, style: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {**extra, "command": launch.command, "args": [_fill(a, style) for a in launch.args]}
    if launch.env:
        entry["env"] = {var.name: style.format(var.name) for var in launch.env}
    return entry


def _headers(launch: Launch, style: str) -> dict[str, str]:
    return {name: _fill(value, style) for name, value in launch.headers}


def claude_desktop(launch: Launch) -> dict[str, Any]:
    """Claude Desktop reads no remote servers from its file: a remote goes through mcp-remote."""
    if launch.remote:
        args = ["-y", MCP_REMOTE, launch.url]
        env = {}
        for name, value in launch.headers:
            var = f"{re.sub(r'[^A-Za-z0-9]+', '_', name).upper()}_HEADER"
            args += ["--header", f"{name}:${{{var}}}"]  # no spaces in args: Windows clients split them
            env[var] = _fill(value, "<{}>")
        entry: dict[str, Any] = {"command": "npx", "args": args}
        if env:
            entry["env"] = env
        return {"mcpServers": {launch.key: entry}}
    # No interpolation documented: the values are typed in where the placeholders are.
    return {"mcpServers": {launch.key: _stdio_entry(launch, "<{}>")}}


def claude_code_json(launch: Launch) -> dict[str, Any]:
    if launch.remote:
        entry: dict[str, Any] = {"type": "http" if launch.transport == "streamable-http" else "sse", "url": launch.url}
        if launch.headers:
            entry["headers"] = _headers(launch, "${{{}}}")
        return {"mcpServers": {launch.key: entry}}
    return {"mcpServers": {launch.key: _stdio_entry(launch, "${{{}}}", type="stdio")}}


def claude_code_command(launch: Launch) -> str:
    """``claude mcp add``: options before the name, ``--`` before a stdio command. Placeholders
    are single-quoted, so the shell leaves ``${VAR}`` alone and Claude Code reads the variable
    when it starts the server: the secret never lands in its config file."""
    if launch.remote:
        transport = "http" if launch.transport == "streamable-http" else "sse"
        parts = ["claude", "mcp", "add", "--transport", transport, launch.key, launch.url]
        for name, value in launch.headers:
            parts += ["--header", f"{name}: {_fill(value, '${{{}}}')}"]
        return shlex.join(parts)
    parts = ["claude", "mcp", "add", "--transport", "stdio"]
    for var in launch.env:
        parts += ["--env", f"{var.name}=${{{var.name}}}"]
    parts += [launch.key, "--", launch.command, *(_fill(a, "${{{}}}") for a in launch.args)]
    return shlex.join(parts)


def _env_config(launch: Launch, url_key: str) -> dict[str, Any]:
    """Cursor's and Windsurf's shape: ``mcpServers``, ``${env:VAR}``; only the URL's key differs."""
    if launch.remote:
        entry: dict[str, Any] = {url_key: launch.url}
        if launch.headers:
            entry["headers"] = _headers(launch, "${{env:{}}}")
        return {"mcpServers": {launch.key: entry}}
    return {"mcpServers": {launch.key: _stdio_entry(launch, "${{env:{}}}")}}


def cursor(launch: Launch) -> dict[str, Any]:
    return _env_config(launch, "url")


def cursor_deeplink(launch: Launch) -> str:
    """The inner entry, base64 of its JSON, as Cursor's own generator makes it."""
    entry = cursor(launch)["mcpServers"][launch.key]
    config = base64.b64encode(json.dumps(entry, separators=(",", ":")).encode()).decode()
    return f"cursor://anysphere.cursor-deeplink/mcp/install?name={quote(launch.key)}&config={quote(config)}"


def input_id(name: str) -> str:
    return name.lower().replace("_", "-")


def vscode(launch: Launch) -> dict[str, Any]:
    """``.vscode/mcp.json``: every variable an input, prompted once (secrets as passwords)."""
    inputs = [
        {
            "type": "promptString",
            "id": input_id(var.name),
            "description": var.description or var.name,
            "password": var.secret,
        }
        for var in launch.all_variables()
    ]
    style = "${{input:{}}}"

    def filled(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: style.format(input_id(m.group(1))), text)

    if launch.remote:
        entry: dict[str, Any] = {"type": "http" if launch.transport == "streamable-http" else "sse", "url": launch.url}
        if launch.headers:
            entry["headers"] = {name: filled(value) for name, value in launch.headers}
    else:
        entry = {"type": "stdio", "command": launch.command, "args": [filled(a) for a in launch.args]}
        if launch.env:
            entry["env"] = {var.name: style.format(input_id(var.name)) for var in launch.env}
    config: dict[str, Any] = {"servers": {launch.key: entry}}
    if inputs:
        config = {"inputs": inputs, **config}
    return config


def vscode_install_url(launch: Launch) -> str:
    config = vscode(launch)
    payload = {"name": launch.key, **config["servers"][launch.key]}
    if config.get("inputs"):
        payload["inputs"] = config["inputs"]
    return "vscode:mcp/install?" + quote(json.dumps(payload, separators=(",", ":")), safe="")


def windsurf(launch: Launch) -> dict[str, Any]:
    return _env_config(launch, "serverUrl")  # its docs name serverUrl for remotes


@dataclass(frozen=True)
class InstallConfigs:
    launch: Launch
    claude_desktop: dict[str, Any]
    claude_code_command: str
    claude_code_json: dict[str, Any]
    cursor: dict[str, Any]
    cursor_deeplink: str
    vscode: dict[str, Any]
    vscode_install_url: str
    windsurf: dict[str, Any]


def install_configs(document: dict[str, Any]) -> InstallConfigs:
    """Every client's config for the server's first way to run (``NoLaunch`` if it has none)."""
    found = launches(document)
    if not found:
        raise NoLaunch(f"{document.get('name')}: no package a client can start and no remote URL")
    launch = found[0]
    return InstallConfigs(
        launch=launch,
        claude_desktop=claude_desktop(launch),
        claude_code_command=claude_code_command(launch),
        claude_code_json=claude_code_json(launch),
        cursor=cursor(launch),
        cursor_deeplink=cursor_deeplink(launch),
        vscode=vscode(launch),
        vscode_install_url=vscode_install_url(launch),
        windsurf=windsurf(launch),
    )
