"""The config validator: is this MCP client config well formed for its client, and does it
say what its author meant?

``validate`` takes the text as pasted (or uploaded) and reports, each with a severity, a
JSON path, a message and a fix:

* JSON syntax errors with line and column; comments and trailing commas are accepted where
  the client reads JSONC (VS Code's mcp.json) and reported elsewhere;
* schema errors against the client's declared shape (``apps.configtools.clients``);
* semantic problems: unknown keys, a missing ``command`` or URL, a transport that does not
  match the URL, placeholders in another client's syntax or naming an undeclared input,
  packages not in the marketplace index or not at the version named, values that look
  like secrets, environment variables the server needs (per its server.json) but the
  config lacks;
* optionally, an MCP ``initialize`` sent to each remote URL (``check_endpoint``), which
  refuses private, loopback, link-local and reserved targets unless the operator set
  ``MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS``.

Nothing is stored. The index is only read, and the endpoint check runs after every read,
outside any transaction.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from pydantic import ValidationError

from apps.configtools import clients, scanner

ERROR, WARNING, INFO = "error", "warning", "info"
MAX_BYTES = 256 * 1024
MAX_ENDPOINTS = 10
ENDPOINT_TIMEOUT = 5.0  # seconds, for each of connect and read
ENDPOINT_BUDGET = 15.0  # seconds for all of a config's checks: a request must not hang a worker
PROTOCOL_VERSION = "2025-06-18"


@dataclass(frozen=True)
class Problem:
    severity: str
    path: str
    message: str
    fix: str = ""
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class EndpointResult:
    path: str
    url: str
    ok: bool
    message: str
    server: str = ""  # serverInfo name and version, when it answered
    protocol_version: str = ""


@dataclass
class Report:
    client: str | None
    detected: bool  # False when the caller named the client
    reason: str
    problems: list[Problem] = field(default_factory=list)
    endpoints: list[EndpointResult] = field(default_factory=list)
    config: Any = None

    @property
    def valid(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    @property
    def client_label(self) -> str:
        return clients.CLIENTS.get(self.client or "", "Unknown client")

    def as_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "detected": self.detected,
            "reason": self.reason,
            "valid": self.valid,
            "problems": [asdict(p) for p in self.problems],
            "endpoints": [asdict(e) for e in self.endpoints],
        }


# --- JSON and JSONC ------------------------------------------------------------------------


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _parse(text: str) -> tuple[Any, list[Problem], bool]:
    """The parsed config (or None), syntax problems, and whether JSONC features were used."""
    try:
        return json.loads(text), [], False
    except json.JSONDecodeError as strict_error:
        stripped, first = clients.strip_jsonc(text)
        if first is None:
            return None, [_syntax_problem(strict_error)], False
        try:
            return json.loads(stripped), [], True
        except json.JSONDecodeError as error:
            return None, [_syntax_problem(error)], True


def _syntax_problem(error: json.JSONDecodeError) -> Problem:
    return Problem(
        ERROR,
        "$",
        f"JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}.",
        "Check for a missing comma or quote, or an unclosed bracket, just before that position.",
        line=error.lineno,
        column=error.colno,
    )


# --- shape ---------------------------------------------------------------------------------


def _loc_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts the union branch or type name in loc for some errors; drop those.
    parts = [p for p in loc if isinstance(p, int) or not re.fullmatch(r"(?:literal\[.*\]|str|int|none|function-.*)", p)]
    return scanner.jpath(*parts)


def _shape_problems(config: Any, client: str) -> list[Problem]:
    try:
        clients.SHAPES[client].model_validate(config)
    except ValidationError as exc:
        problems, seen = [], set()
        for error in exc.errors():
            path = _loc_path(tuple(error["loc"]))
            if (path, error["type"]) in seen:
                continue
            seen.add((path, error["type"]))
            key = str(error["loc"][-1]) if error["loc"] else ""
            if error["type"] == "extra_forbidden":
                hint = clients.MISPLACED.get(client, {}).get(key)
                problems.append(
                    Problem(
                        ERROR if hint and client == clients.CLAUDE_DESKTOP and key == "url" else WARNING,
                        path,
                        f"Unknown key `{key}` for {clients.CLIENTS[client]}: the client ignores it.",
                        hint or "Remove it, or check its spelling against the client's documentation.",
                    )
                )
            elif error["type"] == "missing":
                problems.append(Problem(ERROR, path, f"`{key}` is required here.", f"Add `{key}`."))
            else:
                problems.append(Problem(ERROR, path, f"{error['msg']}.", _type_fix(error)))
        return problems
    return []


def _type_fix(error: dict[str, Any]) -> str:
    if error["type"] == "literal_error":
        return f"Use one of the values allowed: {error.get('ctx', {}).get('expected', '')}."
    return "Give it the type the client expects (strings for args, env and headers values)."


# --- meaning -------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_STYLE = {
    clients.CLAUDE_CODE: "`${NAME}` (or `${NAME:-default}`)",
    clients.CURSOR: "`${env:NAME}`",
    clients.WINDSURF: "`${env:NAME}`",
    clients.VSCODE: "`${input:id}` (declared in `inputs`) or `${env:NAME}`",
}
_CURSOR_VARS = {"userHome", "workspaceFolder", "workspaceFolderBasename", "pathSeparator", "/"}


def _placeholder_problems(client: str, entry: scanner.Entry, inputs: set[str]) -> list[Problem]:
    problems = []
    values: list[tuple[str, str]] = [(entry.path("command"), entry.command)]
    values += [(entry.path("args", i), a) for i, a in enumerate(entry.args)]
    values += [(entry.path("env", k), v) for k, v in entry.env.items()]
    values += [(entry.path("headers", k), v) for k, v in entry.headers.items()]
    if entry.url_field:
        values.append((entry.path(entry.url_field[0]), entry.url_field[1]))
    # mcp-remote expands `${VAR}` in its own arguments from the entry's env (client-configs.md).
    bridge = "mcp-remote" in entry.args or any(a.startswith("mcp-remote@") for a in entry.args)
    for path, value in values:
        for inner in _PLACEHOLDER.findall(value or ""):
            if bridge and inner in entry.env and path.startswith(entry.path("args")):
                continue
            problem = _placeholder_problem(client, inner, inputs)
            if problem:
                problems.append(Problem(WARNING if not problem[2] else ERROR, path, problem[0], problem[1]))
    return problems


def _placeholder_problem(client: str, inner: str, inputs: set[str]) -> tuple[str, str, bool] | None:
    """(message, fix, is_error) for one ``${…}``, or None when the client reads it."""
    kind, _, name = inner.partition(":")
    if client == clients.CLAUDE_DESKTOP:
        return (
            f"Claude Desktop does not replace `${{{inner}}}`: the server gets it literally.",
            "Type the value in (the file is yours alone), or start the server through a wrapper that reads the "
            "environment.",
            False,
        )
    if client == clients.VSCODE:
        if kind == "input":
            if name not in inputs:
                return (
                    f"`${{input:{name}}}` names an input that `inputs` does not declare.",
                    f'Add {{"type": "promptString", "id": "{name}", "password": true}} to `inputs`.',
                    True,
                )
            return None
        if kind in ("env", "workspaceFolder", "userHome", "config", "command") or inner in (
            "workspaceFolder",
            "userHome",
            "pathSeparator",
            "/",
            "workspaceFolderBasename",
        ):
            return None
        return (
            f"VS Code does not know `${{{inner}}}`.",
            f"Use {_STYLE[client]}.",
            False,
        )
    if client in (clients.CURSOR, clients.WINDSURF):
        if (
            kind == "env"
            or (client == clients.WINDSURF and kind == "file")
            or (client == clients.CURSOR and inner in _CURSOR_VARS)
        ):
            return None
        return (
            f"{clients.CLIENTS[client]} does not replace `${{{inner}}}`.",
            f"Use {_STYLE[client]}" + (f": `${{env:{inner}}}`." if re.fullmatch(r"[A-Za-z_]\w*", inner) else "."),
            False,
        )
    if client == clients.CLAUDE_CODE:
        if re.fullmatch(r"[A-Za-z_]\w*(?::-.*)?", inner):
            return None
        return (
            f"Claude Code does not replace `${{{inner}}}`.",
            f"Use {_STYLE[client]}" + (f": `${{{name}}}`." if kind in ("env", "input") and name else "."),
            False,
        )
    return None


def _entry_problems(client: str, entry: scanner.Entry, inputs: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    raw = entry.raw
    url_key = clients.url_key(client)
    has_command = isinstance(raw.get("command"), str) and raw["command"].strip() != ""
    url = entry.url_field
    kind = raw.get("type")
    if client == clients.CLAUDE_DESKTOP:
        if not has_command:
            problems.append(
                Problem(
                    ERROR,
                    entry.path(),
                    "No `command`: Claude Desktop cannot start this server.",
                    "Add `command` and `args`.",
                )
            )
    elif not has_command and not url:
        problems.append(
            Problem(
                ERROR,
                entry.path(),
                f"Neither `command` (a local server) nor `{url_key}` (a remote one).",
                f"Add `command` and `args` to start it, or `{url_key}` to reach it.",
            )
        )
    elif has_command and url:
        problems.append(
            Problem(
                ERROR,
                entry.path(),
                f"Both `command` and `{url[0]}`: the client uses one and ignores the other.",
                "Keep one: split it into two entries if you meant both.",
            )
        )
    if kind == "stdio" and url and not has_command:
        problems.append(
            Problem(ERROR, entry.path("type"), "`type` is stdio but the entry has a URL.", 'Set `"type": "http"`.')
        )
    if kind in ("http", "sse", "streamable-http") and has_command:
        problems.append(
            Problem(
                ERROR, entry.path("type"), f"`type` is {kind} but the entry starts a command.", 'Set `"type": "stdio"`.'
            )
        )
    if url:
        problems += _url_problems(client, entry, url[0], url[1], kind)
    if client == clients.WINDSURF and url and url[0] == "url":
        problems.append(
            Problem(
                WARNING,
                entry.path("url"),
                "Windsurf's docs name `serverUrl`; one integrator saw a `url` entry register nothing.",
                "Rename `url` to `serverUrl`.",
            )
        )
    problems += _placeholder_problems(client, entry, inputs)
    for found in scanner.secret_findings(entry):
        problems.append(
            Problem(
                WARNING,
                found.path,
                f"This looks like a secret ({found.title.lower()}: {found.evidence}).",
                "Reference it through a placeholder instead of writing it in the file, and rotate it.",
            )
        )
    problems += _index_problems(entry)
    return problems


def _url_problems(client: str, entry: scanner.Entry, key: str, url: str, kind: Any) -> list[Problem]:
    path = entry.path(key)
    parts = urlsplit(url.strip())
    if client == clients.VSCODE and parts.scheme in ("unix", "pipe"):
        return []
    if parts.scheme not in ("http", "https") or not parts.hostname:
        if "${" in url:
            return []  # the client fills the host in
        return [Problem(ERROR, path, f"`{url[:80]}` is not an http(s) URL.", "Use the server's full https:// URL.")]
    problems = []
    tail = parts.path.rstrip("/").rsplit("/", 1)[-1].lower()
    if kind == "sse" and tail == "mcp":
        problems.append(
            Problem(
                WARNING,
                entry.path("type"),
                "`type` is sse but the URL ends in /mcp, the usual Streamable HTTP endpoint.",
                'Set `"type": "http"` unless the server documents an SSE endpoint here.',
            )
        )
    if kind in ("http", "streamable-http") and tail == "sse":
        problems.append(
            Problem(
                WARNING,
                entry.path("type"),
                f"`type` is {kind} but the URL ends in /sse, the usual endpoint of the older SSE transport.",
                'Set `"type": "sse"`, or use the server\'s Streamable HTTP URL (often /mcp).',
            )
        )
    if client == clients.CLAUDE_CODE and kind is None:
        problems.append(
            Problem(
                WARNING,
                entry.path(),
                "A URL entry without `type`: Claude Code may skip it.",
                'Add `"type": "http"` (or `"sse"`).',
            )
        )
    return problems


def _index_problems(entry: scanner.Entry) -> list[Problem]:
    ref, remote = scanner.what_it_runs(entry)
    if ref is None:
        if (
            remote
            and remote[1].startswith("https://")
            and "${" not in remote[1]
            and scanner.index_match(url=remote[1]) is None
        ):
            return [
                Problem(
                    INFO,
                    remote[0],
                    "This remote is not in the marketplace index.",
                    "Nothing to fix if it is your own server; otherwise check the URL against the server's docs.",
                )
            ]
        return []
    path = entry.path("args", ref.arg_index)
    match = scanner.index_match(ref=ref)
    if match is None:
        return [
            Problem(
                WARNING,
                path,
                f"The {ref.registry_type} package `{ref.identifier}` is not in the marketplace index.",
                "Check the name for typos (typosquatted packages look alike); a private package is fine.",
            )
        ]
    problems = []
    known = [v for v in match.versions if v]
    if ref.version and ref.version != "latest" and known and ref.version not in known:
        latest = (
            clients.split_image(str((match.package or {}).get("identifier")))[1]
            if ref.registry_type == "oci"
            else (str((match.package or {}).get("version") or ""))
        )
        problems.append(
            Problem(
                WARNING,
                path,
                f"`{ref.identifier}` is not in the index at version {ref.version} (known: {', '.join(known[:8])}).",
                f"Use a published version{f', e.g. the latest, {latest}' if latest else ''}.",
            )
        )
    needed = [
        v
        for v in (match.package or {}).get("environmentVariables") or []
        if isinstance(v, dict) and v.get("isRequired") and isinstance(v.get("name"), str)
    ]
    given = set(entry.env) | set(entry.raw.get("env") or {})
    args = entry.args
    given |= {args[i + 1].split("=", 1)[0] for i, a in enumerate(args[:-1]) if a in ("-e", "--env")}
    for var in needed:
        if var["name"] not in given:
            problems.append(
                Problem(
                    WARNING,
                    entry.path("env"),
                    f"{match.server.name} needs `{var['name']}`"
                    + (f" ({str(var.get('description'))[:120]})" if var.get("description") else "")
                    + ", which the config does not set.",
                    f"Add `{var['name']}` to `env`"
                    + (" as a placeholder, not the value itself." if var.get("isSecret") else "."),
                )
            )
    return problems


# --- the endpoint check --------------------------------------------------------------------


class Refused(Exception):
    """The target is one we will not connect to; the message says why."""


def _allow_private() -> bool:
    return settings.MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS


def resolve_public(host: str, port: int) -> str:
    """The one address to connect to for ``host``, resolved once (so a second lookup cannot
    rebind it to an internal address). Refuses private, loopback, link-local, reserved,
    multicast and unspecified addresses unless the operator allows private targets."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"{host} does not resolve ({exc.strerror}).") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise Refused(f"{host} does not resolve.")
    if not _allow_private():
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not ip.is_global or ip.is_multicast:
                kind = (
                    "unspecified"
                    if ip.is_unspecified
                    else "loopback"
                    if ip.is_loopback
                    else "link-local"
                    if ip.is_link_local
                    else "private"
                    if ip.is_private
                    else "reserved or non-public"
                )
                raise Refused(
                    f"{host} resolves to {address}, a {kind} address: the endpoint check only reaches public "
                    "addresses (the operator can allow private targets with MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS)."
                )
    return addresses[0]


def _connection(parts: Any, address: str, timeout: float) -> http.client.HTTPConnection:
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

    # Connect to the address checked above, while the Host header, SNI and the certificate
    # check still use the host name.
    def pinned(_address: tuple[str, int], timeout: float | None = None, source: Any = None) -> socket.socket:
        return socket.create_connection((address, port), timeout, source)

    conn._create_connection = pinned  # type: ignore[attr-defined]
    return conn


def _first_message(response: http.client.HTTPResponse, limit: int = 256 * 1024) -> Any:
    """The JSON-RPC reply from a JSON body or the first ``data:`` event of an SSE stream."""
    kind = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    if kind == "text/event-stream":
        data: list[str] = []
        read = 0
        while read < limit:
            raw = response.readline(8192)
            if not raw:
                break
            read += len(raw)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                try:
                    return json.loads("\n".join(data))
                except ValueError:
                    data = []
        return json.loads("\n".join(data)) if data else None
    return json.loads(response.read(limit))


def check_endpoint(url: str, *, path: str = "$", timeout: float = ENDPOINT_TIMEOUT) -> EndpointResult:
    """Send an MCP ``initialize`` over Streamable HTTP and say what answered."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return EndpointResult(path, url, False, "Only http(s) URLs can be checked.")
    if "${" in url or "{" in (parts.hostname or ""):
        return EndpointResult(path, url, False, "The URL holds a placeholder; fill it in to check it.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve_public(parts.hostname, port)
    except Refused as exc:
        return EndpointResult(path, url, False, f"Refused: {exc}")
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcpnest-validator", "version": "1.0"},
            },
        }
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = _connection(parts, address, timeout)
    started = time.monotonic()
    try:
        conn.request(
            "POST",
            target,
            body=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": PROTOCOL_VERSION,
            },
        )
        response = conn.getresponse()
        elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
        session = response.getheader("Mcp-Session-Id")
        if response.status in (401, 403):
            return EndpointResult(
                path,
                url,
                True,
                f"Reachable; it asks for authorization (HTTP {response.status}), as expected without credentials.",
            )
        if response.status >= 300:
            return EndpointResult(
                path, url, False, f"HTTP {response.status} {response.reason} to initialize ({elapsed})."
            )
        message = _first_message(response)
        result = message.get("result") if isinstance(message, dict) else None
        if not isinstance(result, dict):
            error = message.get("error") if isinstance(message, dict) else None
            detail = f": {str(error.get('message'))[:200]}" if isinstance(error, dict) else ""
            return EndpointResult(path, url, False, f"It answered, but not with an initialize result{detail}.")
        info = result.get("serverInfo") if isinstance(result.get("serverInfo"), dict) else {}
        server = f"{info.get('name', '?')} {info.get('version', '')}".strip()
        outcome = EndpointResult(
            path,
            url,
            True,
            f"MCP server answered initialize in {elapsed}.",
            server=server[:200],
            protocol_version=str(result.get("protocolVersion") or "")[:40],
        )
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else type(exc).__name__
        return EndpointResult(path, url, False, f"No MCP answer: {reason}.")
    finally:
        conn.close()
    if session:
        _end_session(parts, address, target, session, timeout)
    return outcome


def _end_session(parts: Any, address: str, target: str, session: str, timeout: float) -> None:
    """Best effort: tell the server we are done, so our session does not linger there."""
    conn = _connection(parts, address, timeout)
    try:
        conn.request("DELETE", target, headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL_VERSION})
        conn.getresponse().read(1024)
    except (OSError, http.client.HTTPException):
        pass  # the session expires on its own
    finally:
        conn.close()


# --- the entry point -----------------------------------------------------------------------


def validate(text: str, *, client: str | None = None, check_endpoints: bool = False) -> Report:
    """Everything wrong with a pasted config, for ``client`` (detected when None)."""
    if client is not None and client not in clients.CLIENTS:
        raise ValueError(f"Unknown client {client!r}; one of {', '.join(clients.CLIENTS)}.")
    if len(text.encode("utf-8")) > MAX_BYTES:
        return Report(
            client,
            client is None,
            "",
            [Problem(ERROR, "$", f"The config is larger than {MAX_BYTES // 1024} KB.", "Paste only the MCP config.")],
        )
    config, problems, jsonc = _parse(text)
    if config is None:
        return Report(client, client is None, "the text is not JSON", problems)
    detection = clients.detect(config) if client is None else clients.Detection(client, "chosen")
    report = Report(detection.client, client is None, detection.reason, problems, config=config)
    if jsonc:
        _, (offset, kind) = clients.strip_jsonc(text)  # type: ignore[misc]
        line, column = _position(text, offset)
        if detection.client == clients.VSCODE:
            report.problems.append(
                Problem(
                    INFO, "$", f"Uses {kind} (line {line}): fine, VS Code reads mcp.json as JSONC.", "", line, column
                )
            )
        else:
            who = clients.CLIENTS.get(detection.client or "", "this client")
            report.problems.append(
                Problem(
                    ERROR,
                    "$",
                    f"JSON syntax error at line {line}, column {column}: {kind}, which {who} does not accept "
                    "(only VS Code's mcp.json allows comments and trailing commas).",
                    f"Remove {kind}.",
                    line,
                    column,
                )
            )
    if detection.client is None:
        report.problems.append(
            Problem(
                ERROR,
                "$",
                f"Not an MCP client config: {detection.reason}.",
                'Wrap the servers in {"mcpServers": {…}} (or {"servers": {…}} for VS Code), or pick the client.',
            )
        )
        return report
    chosen = detection.client
    report.problems += _shape_problems(config, chosen)
    servers = config.get(clients.servers_key(chosen)) if isinstance(config, dict) else None
    if isinstance(servers, dict) and not servers:
        report.problems.append(
            Problem(
                WARNING, scanner.jpath(clients.servers_key(chosen)), "No servers configured.", "Add a server entry."
            )
        )
    inputs = {
        str(i.get("id"))
        for i in (config.get("inputs") if isinstance(config.get("inputs"), list) else [])
        if isinstance(i, dict)
    }
    remotes: list[tuple[str, str]] = []
    for entry in scanner.entries({clients.servers_key(chosen): servers} if isinstance(servers, dict) else {}):
        report.problems += _entry_problems(chosen, entry, inputs)
        if entry.url_field and not entry.command:
            remotes.append((entry.path(entry.url_field[0]), entry.url_field[1]))
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    report.problems.sort(key=lambda p: order[p.severity])
    if check_endpoints:
        # After every database read: no connection is held open while we wait on the network.
        started = time.monotonic()
        for path, url in remotes[:MAX_ENDPOINTS]:
            if time.monotonic() - started > ENDPOINT_BUDGET:
                report.endpoints.append(
                    EndpointResult(path, url, False, f"Not checked: the {ENDPOINT_BUDGET:.0f} s budget ran out.")
                )
                continue
            report.endpoints.append(check_endpoint(url, path=path))
        if len(remotes) > MAX_ENDPOINTS:
            report.problems.append(Problem(INFO, "$", f"Only the first {MAX_ENDPOINTS} remote URLs were checked.", ""))
    return report
