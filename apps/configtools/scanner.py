"""Static security analysis of an MCP client config (and of its servers' tool metadata, when
known): offline, and nothing is stored.

``RULES`` is the one table of what the scanner looks for, each with why it matters and the
fix; ``scan`` walks every server entry of any of the five clients' formats and returns
``Finding`` rows that point at a JSON path. A finding never repeats a secret: it shows its
first four characters and an ellipsis. The marketplace index is read (never written) to
flag archived or deprecated servers and to borrow their known tool descriptions;
``server_findings`` scans a registry server.json's generated config for the quality score.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from apps.configtools import clients
from apps.marketplace.configs import NoLaunch, install_configs
from apps.marketplace.models import ServerVersion

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITY_ORDER = {HIGH: 0, MEDIUM: 1, LOW: 2}


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    why: str
    fix: str


_PLAINTEXT_FIX = (
    "Remove the value from the file and rotate it (it may already be in backups or history); reference "
    "it through the client's placeholder instead: `${input:id}` (VS Code), `${env:NAME}` (Cursor, "
    "Windsurf), `${NAME}` (Claude Code)."
)
_PLAINTEXT_WHY = (
    "Config files get committed, shared and synced; a key in plain text is readable by anything that reads the file."
)

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("secret-github", HIGH, "GitHub token in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-openai", HIGH, "OpenAI API key in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-anthropic", HIGH, "Anthropic API key in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-slack", HIGH, "Slack token in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-aws", HIGH, "AWS access key in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-google", HIGH, "Google API key in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-stripe", HIGH, "Stripe live key in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule("secret-private-key", HIGH, "Private key in plain text", _PLAINTEXT_WHY, _PLAINTEXT_FIX),
        Rule(
            "secret-high-entropy",
            MEDIUM,
            "Value that looks like a secret",
            "A long random-looking value where a credential goes is usually a key or password.",
            _PLAINTEXT_FIX,
        ),
        Rule(
            "unpinned-package",
            MEDIUM,
            "Package not pinned to a version",
            "Without a version (or with @latest) every start may run new code the publisher (or whoever took "
            "over the package) pushed since you reviewed it.",
            "Pin the exact version: `npx -y pkg@1.2.3`, `uvx pkg==1.2.3`, `dnx pkg@1.2.3`.",
        ),
        Rule(
            "unpinned-image",
            MEDIUM,
            "Container image untagged or :latest",
            "An untagged or :latest image changes under you; the next pull may run different code.",
            "Pin a version tag, or better a digest: `image:1.2.3` or `image@sha256:…`.",
        ),
        Rule(
            "insecure-remote",
            HIGH,
            "Remote server over plain http://",
            "Requests, tool results and any Authorization header cross the network unencrypted.",
            "Use the server's https:// URL (plain http is only fine for localhost).",
        ),
        Rule(
            "docker-privileged",
            HIGH,
            "Container runs --privileged or with added capabilities",
            "A privileged container can reach the host's devices and escape to the host.",
            "Drop `--privileged` and `--cap-add`; an MCP server needs neither.",
        ),
        Rule(
            "docker-host-namespace",
            MEDIUM,
            "Container shares the host's network, PID or IPC namespace",
            "With the host network the server reaches every local service (databases, cloud metadata); "
            "host PID/IPC expose other processes.",
            "Remove `--network host` (`--pid host`, `--ipc host`); publish only the ports it needs.",
        ),
        Rule(
            "docker-broad-mount",
            HIGH,
            "Container mounts the host root, home or Docker socket",
            "A mount of /, the home directory, /etc or the Docker socket hands the server the whole machine "
            "(SSH keys, cloud credentials, root via the socket).",
            "Mount only the project directory the server needs, read-only where possible (`-v $PWD/data:/data:ro`).",
        ),
        Rule(
            "broad-filesystem-root",
            HIGH,
            "Filesystem access to / or the whole home directory",
            "The server (and any prompt that steers it) can read SSH keys, browser profiles and credentials.",
            "Give it only the directories it needs, e.g. the project folder.",
        ),
        Rule(
            "dangerous-env",
            HIGH,
            "Environment variable that injects code or weakens TLS",
            "NODE_OPTIONS --require, LD_PRELOAD, DYLD_INSERT_LIBRARIES or a PYTHONPATH in a temporary or relative "
            "directory load code from outside the package; NODE_TLS_REJECT_UNAUTHORIZED=0 disables TLS checks.",
            "Remove the variable; install what the server needs as a dependency instead.",
        ),
        Rule(
            "shell-wrapper",
            MEDIUM,
            "Server started through a shell command line",
            "`sh -c` runs whatever the string says: it hides what actually starts, expands variables and can "
            "chain commands.",
            "Put the program in `command` and its arguments in `args`.",
        ),
        Rule(
            "pipe-to-shell",
            HIGH,
            "Downloads a script and runs it (curl | sh)",
            "Whatever the URL serves at start-up runs with your rights, unreviewed and unpinned.",
            "Install a pinned package instead, and start its binary directly.",
        ),
        Rule(
            "archived-server",
            MEDIUM,
            "Server's repository is archived",
            "An archived repository gets no security fixes.",
            "Move to a maintained alternative from the marketplace.",
        ),
        Rule(
            "deprecated-server",
            MEDIUM,
            "Server is deprecated in the registry",
            "Its publisher marked it deprecated; it may stop working or receive no fixes.",
            "Move to the replacement its publisher names, or another maintained server.",
        ),
        Rule(
            "tool-hidden-instructions",
            HIGH,
            "Tool description hides instructions for the model",
            "Text addressed to the model (<IMPORTANT>, 'do not tell the user') is tool poisoning: the model "
            "follows it without the user seeing it.",
            "Do not install the server; report it to its publisher and the marketplace.",
        ),
        Rule(
            "tool-ignore-previous",
            HIGH,
            "Tool description tells the model to ignore its instructions",
            "'Ignore previous instructions' is a prompt injection aimed at overriding the user and other tools.",
            "Do not install the server; report it.",
        ),
        Rule(
            "tool-credential-request",
            HIGH,
            "Tool description asks for credentials or secret files",
            "A tool that asks the model to read ~/.ssh, .env or config files, or to pass API keys along, "
            "is exfiltrating secrets.",
            "Do not install the server; report it.",
        ),
        Rule(
            "tool-invisible-unicode",
            HIGH,
            "Tool description contains invisible Unicode",
            "Zero-width, bidirectional-override or tag characters hide text from the user that the model still reads.",
            "Do not install the server; report it.",
        ),
    )
}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    path: str
    title: str
    why: str
    fix: str
    evidence: str = ""  # masked: never the secret itself

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _finding(rule_id: str, path: str, evidence: str = "") -> Finding:
    rule = RULES[rule_id]
    return Finding(rule.id, rule.severity, path, rule.title, rule.why, rule.fix, evidence)


def mask(value: str) -> str:
    """The first four characters and an ellipsis: enough to recognise a key, not to use it."""
    return value[:4] + "…"


def jpath(*parts: str | int) -> str:
    """``$.mcpServers.github.args[2]``; keys that are not identifiers in brackets."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}"
        else:
            out += "[" + json.dumps(part) + "]"
    return out


# --- secrets -------------------------------------------------------------------------------

SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("secret-private-key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("secret-github", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b")),
    ("secret-anthropic", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("secret-openai", re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    (
        "secret-slack",
        re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/\w+"),
    ),
    ("secret-aws", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("secret-google", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("secret-stripe", re.compile(r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}")),
)

# Placeholders of every client and of docs: ${input:x}, ${env:X}, ${X}, $X, %X%, <YOUR_KEY>, {api_key}.
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%|<[^<>]*>|\{[A-Za-z_][\w-]*\}")
_DOC_WORDS = re.compile(r"your|here|x{4,}|\*{3,}|\.{3}|placeholder|changeme|example|redacted|dummy|<|>", re.I)
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PWD|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH", re.I)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_.\-]{20,}")
_SECRET_FLAG = re.compile(r"--?(?:[\w-]*(?:token|secret|password|api-?key|key|auth)[\w-]*)", re.I)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0


def _looks_random(token: str, *, named_secret: bool) -> bool:
    if not _TOKEN_CHARS.fullmatch(token) or _DOC_WORDS.search(token):
        return False
    if not (re.search(r"[0-9]", token) and re.search(r"[A-Za-z]", token)):
        return False
    if token.startswith(("http", "/", "./", "@")) or token.count(".") > 2:
        return False  # URLs, paths, package names, host names
    if "/" in token and not named_secret:
        return False  # image references and paths (an AWS secret key has slashes, but sits in a named variable)
    return entropy(token) >= (3.5 if named_secret else 4.2)


def secret_in(value: str, *, named_secret: bool = False) -> tuple[str, str] | None:
    """``(rule id, the matched text)`` for a plaintext secret in ``value``; placeholders are not
    secrets. ``named_secret``: the value sits where a credential goes (an env var called
    *_TOKEN, a --api-key flag, an Authorization header), so a lower entropy will do."""
    if not isinstance(value, str) or not value:
        return None
    text = _PLACEHOLDER.sub(" ", value)
    for rule_id, pattern in SECRET_PATTERNS:
        match = pattern.search(text)
        if match and not _DOC_WORDS.search(match.group(0)):
            return rule_id, match.group(0)
    stripped = re.sub(r"^(?:Bearer|Basic|Token)\s+", "", text.strip(), flags=re.I)
    for token in re.split(r"[\s=:,;]+", stripped):
        if len(token) >= 20 and _looks_random(token, named_secret=named_secret):
            return "secret-high-entropy", token
    return None


# --- entries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One server entry, whichever client's spelling it came in."""

    servers_key: str
    name: str
    raw: dict[str, Any]

    def path(self, *parts: str | int) -> str:
        return jpath(self.servers_key, self.name, *parts)

    @property
    def command(self) -> str:
        return self.raw["command"] if isinstance(self.raw.get("command"), str) else ""

    @property
    def args(self) -> list[str]:
        args = self.raw.get("args")
        return [a if isinstance(a, str) else str(a) for a in args] if isinstance(args, list) else []

    @property
    def env(self) -> dict[str, str]:
        env = self.raw.get("env")
        return {str(k): v for k, v in env.items() if isinstance(v, str)} if isinstance(env, dict) else {}

    @property
    def headers(self) -> dict[str, str]:
        headers = self.raw.get("headers")
        return {str(k): v for k, v in headers.items() if isinstance(v, str)} if isinstance(headers, dict) else {}

    @property
    def url_field(self) -> tuple[str, str] | None:
        for key in ("url", "serverUrl"):
            if isinstance(self.raw.get(key), str):
                return key, self.raw[key]
        return None


def entries(config: Any) -> list[Entry]:
    """Every server entry of a config in any client's format (``servers`` or ``mcpServers``)."""
    if not isinstance(config, dict):
        return []
    found = []
    for key in ("mcpServers", "servers"):
        servers = config.get(key)
        if isinstance(servers, dict):
            found += [Entry(key, str(name), raw) for name, raw in servers.items() if isinstance(raw, dict)]
    return found


_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ash", "ksh", "fish", "powershell", "pwsh"})
_PIPE_TO_SHELL = re.compile(
    r"\b(?:curl|wget|iwr|Invoke-WebRequest|irm)\b[^|]*\|\s*(?:sudo\s+)?(?:sh|bash|zsh|iex|python3?)\b"
)
_SHELL_META = re.compile(r"[;&|`$<>]")
_BROAD_ROOTS = frozenset({"/", "~", "~/", "$HOME", "${HOME}", "${env:HOME}", "${userHome}", "/home", "/Users", "/root"})
_WINDOWS_ROOT = re.compile(r"^[A-Za-z]:[\\/]?$|^%USERPROFILE%[\\/]?$")
_BROAD_MOUNT_SOURCES = frozenset({*_BROAD_ROOTS, "/etc", "/var/run/docker.sock", "/run/docker.sock", "/var/run"})
_NODE_INJECT = re.compile(r"(?:^|\s)(?:-r|--require|--import|--loader|--experimental-loader|--inspect(?:-brk)?)\b")
_ODD_PYTHONPATH = re.compile(
    r"^(?:/tmp|/var/tmp|/dev/shm|.*[\\/](?:Downloads|Temp)\b)|^\.{0,2}$|^[^/~$%\\A-Za-z]|^\.\.?[\\/]"
)
_INJECT_ALWAYS = ("LD_PRELOAD", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH", "PYTHONSTARTUP", "PERL5OPT")


def _launcher(entry: Entry) -> tuple[str, list[str], int]:
    """The program that really starts (past a Windows ``cmd /c``), its args, and their offset."""
    command = entry.command.rsplit("/", 1)[-1].lower().removesuffix(".exe")
    args = entry.args
    if command == "cmd" and len(args) >= 2 and args[0].lower() == "/c":
        return args[1].lower().removesuffix(".cmd"), args[2:], 2
    return command, args, 0


def _is_broad_root(value: str) -> bool:
    return value.rstrip() in _BROAD_ROOTS or bool(_WINDOWS_ROOT.match(value))


def secret_findings(entry: Entry) -> list[Finding]:
    """Plaintext secrets in an entry's env, headers, args, URL and (Cursor) static OAuth client;
    the validator reports the same values as warnings."""
    out = []

    def check(value: str, path: str, *, named: bool) -> None:
        hit = secret_in(value, named_secret=named)
        if hit:
            out.append(_finding(hit[0], path, mask(hit[1])))

    for name, value in entry.env.items():
        check(value, entry.path("env", name), named=bool(_SECRET_NAME.search(name)))
    for name, value in entry.headers.items():
        check(value, entry.path("headers", name), named=bool(_SECRET_NAME.search(name)))
    args = entry.args
    for i, arg in enumerate(args):
        named = bool(i and _SECRET_FLAG.fullmatch(args[i - 1])) or bool(
            re.match(r"(?:--?)?[\w-]*(?:token|secret|password|key|auth)[\w-]*[=:]", arg, re.I)
        )
        check(arg, entry.path("args", i), named=named)
    url = entry.url_field
    if url:
        check(url[1], entry.path(url[0]), named=False)
    if isinstance(entry.raw.get("auth"), dict):  # Cursor's static OAuth client
        for key, value in entry.raw["auth"].items():
            if isinstance(value, str):
                check(value, entry.path("auth", key), named=bool(_SECRET_NAME.search(key)))
    return out


def _launch_findings(entry: Entry) -> list[Finding]:
    out = []
    launcher, args, offset = _launcher(entry)
    ref = clients.package_ref(entry.command, entry.args)
    if ref and ref.registry_type in ("npm", "pypi", "nuget") and ref.version in ("", "latest"):
        out.append(_finding("unpinned-package", entry.path("args", ref.arg_index), ref.identifier))
    if ref and ref.registry_type == "oci" and ref.version in ("", "latest"):
        out.append(_finding("unpinned-image", entry.path("args", ref.arg_index), ref.identifier))
    if launcher == "docker":
        options, _ = clients.docker_run_parts(args)
        for option, value, index in options:
            path = entry.path("args", index + offset)
            if option == "--privileged" or option == "--cap-add":
                out.append(_finding("docker-privileged", path, option))
            elif option in ("--network", "--net", "--pid", "--ipc", "--uts", "--userns") and value == "host":
                out.append(_finding("docker-host-namespace", path, f"{option} host"))
            elif option in ("-v", "--volume", "--mount") and value:
                source = value.split(":", 1)[0] if option != "--mount" else _mount_source(value)
                if source.rstrip("/") in {s.rstrip("/") for s in _BROAD_MOUNT_SOURCES} or source == "/":
                    out.append(_finding("docker-broad-mount", path, source))
    elif launcher not in _SHELLS:
        for i, arg in enumerate(args):
            if _is_broad_root(arg):
                out.append(_finding("broad-filesystem-root", entry.path("args", i + offset), arg))
    whole = " ".join([entry.command, *entry.args])
    if _PIPE_TO_SHELL.search(whole):
        out.append(_finding("pipe-to-shell", entry.path("args") if entry.args else entry.path("command")))
    elif launcher in _SHELLS and any(a in ("-c", "-Command", "-command", "/c") for a in args):
        out.append(_finding("shell-wrapper", entry.path("command"), launcher))
    elif entry.command.lower().removesuffix(".exe") == "cmd" and any(_SHELL_META.search(a) for a in entry.args[1:]):
        # `cmd /c npx …` is how Claude Code starts npx on native Windows; a command line with
        # shell syntax in it is a wrapper all the same.
        out.append(_finding("shell-wrapper", entry.path("command"), "cmd"))
    return out


def _mount_source(value: str) -> str:
    for part in value.split(","):
        key, _, val = part.partition("=")
        if key in ("source", "src"):
            return val
    return ""


def _env_findings(entry: Entry) -> list[Finding]:
    out = []
    for name, value in entry.env.items():
        path = entry.path("env", name)
        upper = name.upper()
        if (
            (upper in _INJECT_ALWAYS and value.strip())
            or (upper == "NODE_OPTIONS" and _NODE_INJECT.search(value))
            or (upper == "NODE_TLS_REJECT_UNAUTHORIZED" and value.strip() == "0")
            or (
                upper == "PYTHONPATH"
                and any(_ODD_PYTHONPATH.match(part) for part in re.split(r"[:;]", value) if not part.startswith("${"))
            )
        ):
            out.append(_finding("dangerous-env", path, name))
    return out


def _remote_findings(entry: Entry) -> list[Finding]:
    url = entry.url_field
    if not url or not url[1].lower().startswith("http://"):
        return []
    host = re.sub(r"^http://([^/:?#]*).*$", r"\1", url[1], flags=re.I).lower()
    if host in ("localhost", "127.0.0.1", "[::1]") or host.endswith(".localhost"):
        return []  # traffic never leaves the machine
    return [_finding("insecure-remote", entry.path(url[0]), url[1][:60])]


# --- tool metadata -------------------------------------------------------------------------

_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")
_HIDDEN = re.compile(
    r"<\s*(?:important|system|secret|hidden|instructions?)\s*>|\b(?:do not|don't|never)\s+(?:tell|mention|"
    r"inform|reveal|show)\b[^.]{0,40}\b(?:user|human)|\bwithout (?:telling|informing|notifying) the user\b|"
    r"\bthe user (?:must not|should not|shouldn't) (?:know|see)\b",
    re.I,
)
_IGNORE = re.compile(
    r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier|"
    r"other|system)\s+(?:instructions?|prompts?|rules|messages|tools?)",
    re.I,
)
_CREDENTIALS = re.compile(
    r"~/\.ssh|\bid_(?:rsa|ed25519|ecdsa)\b|\.ssh/|~/\.aws|\.aws/credentials|(?<![\w.])\.env\b|\bmcp\.json\b|"
    r"claude_desktop_config|\.netrc|\.npmrc|\.pypirc|\.git-credentials|/etc/(?:passwd|shadow)|"
    r"\b(?:read|send|pass|include|attach|provide|exfiltrate)\b[^.]{0,60}\b(?:api[ _-]?keys?|passwords?|"
    r"credentials|private keys?|secrets?|access tokens?)\b",
    re.I,
)


def _tool_texts(tool: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    texts: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(tool.get("description"), str):
        texts.append((("description",), tool["description"]))
    if isinstance(tool.get("title"), str):
        texts.append((("title",), tool["title"]))
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(props, dict):
        for prop, spec in props.items():
            if isinstance(spec, dict) and isinstance(spec.get("description"), str):
                texts.append((("inputSchema", "properties", str(prop), "description"), spec["description"]))
    return texts


def tool_findings(tools: list[Any], *, prefix: tuple[str | int, ...] = ("tools",)) -> list[Finding]:
    """Poisoning patterns in tool names' descriptions (from a live ``tools/list`` or the index)."""
    out = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            continue
        for parts, text in _tool_texts(tool):
            path = jpath(*prefix, i, *parts)
            name = str(tool.get("name") or f"#{i}")[:60]
            if _INVISIBLE.search(text):
                out.append(_finding("tool-invisible-unicode", path, name))
            if _HIDDEN.search(text):
                out.append(_finding("tool-hidden-instructions", path, name))
            if _IGNORE.search(text):
                out.append(_finding("tool-ignore-previous", path, name))
            if _CREDENTIALS.search(text):
                out.append(_finding("tool-credential-request", path, name))
    return out


# --- the marketplace index -----------------------------------------------------------------


@dataclass(frozen=True)
class IndexMatch:
    """The marketplace server an entry starts, and every version the index holds of it."""

    server: Any  # apps.marketplace.models.Server
    document: dict[str, Any]  # its latest server.json
    versions: tuple[str, ...]  # the package's (or remote's) versions known to the index
    package: dict[str, Any] | None  # the matching package of the latest document


def _strip_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def index_match(*, ref: clients.PackageRef | None = None, url: str | None = None) -> IndexMatch | None:
    """Find a package (by registry type and identifier) or a remote (by URL) in the index.

    A read only. server.json lives in a JSON column, so candidates are found by a text match
    on the document (every database has one) and then checked exactly."""
    needle = ref.identifier if ref else (url or "").strip().rstrip("/")
    if not needle:
        return None
    candidates = (
        ServerVersion.objects.filter(document__icontains=needle)
        .select_related("server")
        .order_by("server_id", "-published_at")[:200]
    )
    by_server: dict[int, list[Any]] = {}
    for version in candidates:
        document = version.document if isinstance(version.document, dict) else {}
        if ref:
            hits = [
                p
                for p in document.get("packages") or []
                if isinstance(p, dict)
                and p.get("registryType") == ref.registry_type
                and _same_package(ref, str(p.get("identifier") or ""))
            ]
        else:
            hits = [
                r
                for r in document.get("remotes") or []
                if isinstance(r, dict) and _strip_url(str(r.get("url") or "")) == _strip_url(url or "")
            ]
        if hits:
            by_server.setdefault(version.server_id, []).append((version, hits[0]))
    if not by_server:
        return None
    rows = next(iter(by_server.values()))
    latest = next((row for row in rows if row[0].is_latest), rows[0])
    if ref and ref.registry_type == "oci":
        versions = tuple(dict.fromkeys(clients.split_image(str(p.get("identifier")))[1] for _, p in rows))
    elif ref:
        versions = tuple(dict.fromkeys(str(p.get("version") or "") for _, p in rows))
    else:
        versions = tuple(dict.fromkeys(v.version for v, _ in rows))
    return IndexMatch(
        server=latest[0].server, document=latest[0].document, versions=versions, package=latest[1] if ref else None
    )


def _same_package(ref: clients.PackageRef, identifier: str) -> bool:
    if ref.registry_type == "oci":
        return clients.split_image(identifier)[0].lower() == ref.identifier.lower()
    return identifier.lower() == ref.identifier.lower()


def _registry_status(document: dict[str, Any]) -> str:
    meta = document.get("_meta") if isinstance(document.get("_meta"), dict) else {}
    official = meta.get("io.modelcontextprotocol.registry/official")
    status = official.get("status") if isinstance(official, dict) else None
    return status or str(document.get("status") or "")


def what_it_runs(entry: Entry) -> tuple[clients.PackageRef | None, tuple[str, str] | None]:
    """The package an entry starts, or else the remote it reaches as ``(path, url)``: its
    ``url``/``serverUrl``, or the URL it hands to the mcp-remote bridge (a bridge, not the server)."""
    ref = clients.package_ref(entry.command, entry.args)
    if ref is not None and ref.identifier == "mcp-remote":
        bridged = next((i for i, a in enumerate(entry.args) if a.startswith(("https://", "http://"))), None)
        return None, (entry.path("args", bridged), entry.args[bridged]) if bridged is not None else None
    if ref is not None:
        return ref, None
    url = entry.url_field
    return None, (entry.path(url[0]), url[1]) if url else None


def _index_findings(entry: Entry) -> tuple[list[Finding], list[Any]]:
    """Archived or deprecated servers, and the tools the index knows for the entry's server."""
    ref, remote = what_it_runs(entry)
    match = index_match(ref=ref) if ref else index_match(url=remote[1]) if remote else None
    if match is None:
        return [], []
    out = []
    where = entry.path("args", ref.arg_index) if ref else remote[0] if remote else entry.path()
    if match.server.archived:
        out.append(_finding("archived-server", where, match.server.name))
    if match.server.status == "deprecated" or _registry_status(match.document) == "deprecated":
        out.append(_finding("deprecated-server", where, match.server.name))
    return out, list(match.server.tools or [])


# --- entry points --------------------------------------------------------------------------


def parse(config: dict | str) -> Any:
    """A config as given: parsed already, or its JSON text (``ValueError`` if it is not JSON)."""
    if isinstance(config, str):
        try:
            return json.loads(config)
        except ValueError:
            stripped, first = clients.strip_jsonc(config)
            if first is None:
                raise
            return json.loads(stripped)  # VS Code's JSONC: scan what the client would read
    return config


def scan(config: dict | str, *, tools: list | None = None, index: bool = True) -> list[Finding]:
    """Every finding for ``config`` (any client's format), worst first.

    ``tools``: tool metadata to check for poisoning (a live ``tools/list``); the tools the
    index knows for each server are checked too. ``index=False`` skips the marketplace
    lookups (archived, deprecated, known tools), for callers that hold the server already."""
    parsed = parse(config)
    findings: list[Finding] = []
    for entry in entries(parsed):
        findings += secret_findings(entry)
        findings += _launch_findings(entry)
        findings += _env_findings(entry)
        findings += _remote_findings(entry)
        if index:
            found, known_tools = _index_findings(entry)
            findings += found
            findings += tool_findings(known_tools, prefix=(entry.servers_key, entry.name, "(index)", "tools"))
    findings += tool_findings(tools or [])
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.path, f.rule))


def server_findings(document: dict[str, Any], *, tools: list | None = None) -> list[Finding]:
    """Findings for a registry server.json: its generated config (the first way to run it, as
    the marketplace's install configs write it), its registry status and its tools.

    No database read: the caller (the quality score) holds the Server row and knows whether
    its repository is archived. A server with nothing a client can start has no config
    findings."""
    findings: list[Finding] = []
    try:
        generated = install_configs(document)
    except NoLaunch:
        generated = None
    if generated is not None:
        # Claude Code's .mcp.json is the most literal of the five spellings.
        findings += scan(generated.claude_code_json, index=False)
    if _registry_status(document) == "deprecated":
        findings.append(_finding("deprecated-server", jpath("_meta"), str(document.get("name") or "")[:100]))
    findings += tool_findings(tools or [])
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.path, f.rule))
