"""A publisher's ``server.json``, checked the way the official registry checks it, offline.

``validate(text)`` parses the document (a syntax error says its line and column), validates
it against the vendored official schema (``schemas/server.schema.json``, 2025-12-11), then
applies the registry's own rules that the schema cannot express and that need no network
(the name's shape, no version ranges nor ``latest``, https for links and icons, the
``$schema`` in force, the size of ``_meta``). Every problem is reported at once, each with
its JSON path (``$.packages[0].version``), so a publisher fixes them all in one pass.

What needs the network (package ownership on npm/PyPI/…, namespace proof) is not checked
here: staff review stands in for it. Django-free.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import FormatChecker, ValidationError
from jsonschema.validators import validator_for
from referencing import Registry, Resource

from relay.protocol import json_kind

SCHEMA_PATH = Path(__file__).parent / "schemas" / "server.schema.json"
CURRENT_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
# Earlier official schemas: a document naming one gets told to move to the current one.
OLDER_SCHEMAS = ("2025-07-09", "2025-09-16", "2025-09-29", "2025-10-17")
# Ours, not the registry's: far above any real server.json (the largest of the official
# registry's 2025-12 snapshot is a few KiB), small enough that validation stays cheap.
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_PROBLEMS = 100
# The registry preserves this key of ``_meta`` only, up to 4 KiB of JSON.
PUBLISHER_META = "io.modelcontextprotocol.registry/publisher-provided"
PUBLISHER_META_MAX = 4096

# The registry's name rule (internal/validators/validators.go), stricter than the schema's
# pattern: each part starts and ends with a letter or digit.
_NAMESPACE = r"[a-zA-Z0-9][a-zA-Z0-9.-]*[a-zA-Z0-9]"
_NAME_PART = r"[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]"
SERVER_NAME = re.compile(rf"^{_NAMESPACE}/{_NAME_PART}$")
# Version ranges the registry rejects (same file): ^1.2.3, >=1, 1.2 - 2.0, 1.2 || 1.3, 1.x.
_V = r"v?\d+(?:\.\d+){0,3}(?:-[0-9A-Za-z.-]+)?"
_RANGES = (
    re.compile(rf"^\s*(?:\^|~|>=|<=|>|<|=)\s*{_V}\s*$"),
    re.compile(rf"^\s*{_V}\s-\s*{_V}\s*$"),
    re.compile(rf"^\s*(?:{_V}\s*)(?:\|\|\s*{_V}\s*)+$"),
)
_WILDCARD = re.compile(r"^\s*(?:v?\d+|x|X|\*)(?:\.(?:\d+|x|X|\*)){1,2}(?:-[0-9A-Za-z.-]+)?\s*$")
NOT_LATEST = 'must be a specific version, not "latest"'


@dataclass(frozen=True)
class Problem:
    path: str  # JSONPath of the offending value: "$", "$.name", "$.packages[0].version"
    message: str
    hint: str = ""
    line: int | None = None  # for a syntax error
    column: int | None = None


@dataclass(frozen=True)
class Validated:
    """A document that passed: as the registry would store it (``_meta`` keeps only the
    publisher-provided key, as the registry does)."""

    document: dict[str, Any]
    name: str
    version: str

    @property
    def namespace(self) -> str:
        return self.name.split("/", 1)[0]


class Invalid(ValueError):
    """The document cannot be accepted; ``problems`` says every reason found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems[:5]))


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator():
    document = schema()
    cls = validator_for(document)  # draft-07, as the file declares
    cls.check_schema(document)
    checker = FormatChecker(formats=())
    checker.checks("uri")(_is_uri)
    # The schema's only references are its own "#/definitions/…"; a registry holding just
    # it means nothing is ever fetched.
    registry = Registry().with_resource(document["$id"], Resource.from_contents(document))
    return cls(document, format_checker=checker, registry=registry)


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type keyword reports it
    if any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme or "")) and bool(parts.netloc or parts.path)


def path_of(parts: Iterable[str | int]) -> str:
    """``["packages", 0, "version"]`` → ``$.packages[0].version``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", part):
            out += f".{part}"
        else:
            out += "[" + json.dumps(part) + "]"
    return out


def validate(data: str | bytes) -> Validated:
    """The document, if the registry would accept it; else ``Invalid`` with every problem."""
    document = parse(data)
    if document.get("repository") == {}:
        # What the registry's own API prints for a server published without one (Go's
        # empty struct): copied back from there, it means "no repository".
        document = {k: v for k, v in document.items() if k != "repository"}
    problems = _dedupe([*schema_problems(document), *rule_problems(document)])
    if problems:
        raise Invalid(problems[:MAX_PROBLEMS])
    meta = document.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k == PUBLISHER_META}
        document = {k: v for k, v in document.items() if k != "_meta"} | ({"_meta": kept} if kept else {})
    return Validated(document=document, name=document["name"], version=document["version"])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse(data: str | bytes) -> dict[str, Any]:
    """The JSON object in ``data``; ``Invalid`` with a line and column if it is not one."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise Invalid([Problem("$", f"the document is {size} bytes; at most {MAX_BYTES} are accepted")])
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Invalid([Problem("$", f"not UTF-8: byte {exc.start} cannot be decoded")]) from None
    if not data.strip():
        raise Invalid([Problem("$", "the document is empty", hint="Paste the contents of your server.json.")])
    try:
        document = json.loads(data, parse_constant=_reject_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise Invalid(
            [
                Problem(
                    "$",
                    f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    line=exc.lineno,
                    column=exc.colno,
                )
            ]
        ) from None
    except RecursionError:
        raise Invalid([Problem("$", "invalid JSON: nested too deeply")]) from None
    except ValueError as exc:  # a constant, an infinite float, an integer past Python's digit limit
        reason = "a number has too many digits" if "digits" in str(exc) else str(exc)
        raise Invalid([Problem("$", f"invalid JSON: {reason}")]) from None
    if not isinstance(document, dict):
        raise Invalid([Problem("$", f"a server.json is a JSON object, not {json_kind(document)}")])
    text_problems = list(_text_problems(document))
    if text_problems:
        raise Invalid(text_problems[:MAX_PROBLEMS])
    return document


def _text_problems(document: Any) -> Iterator[Problem]:
    """Strings no database stores as they are (NUL, lone surrogates), and silly nesting.
    Iterative, so no document can exhaust the stack."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        node, where = stack.pop()
        if len(where) > MAX_DEPTH:
            yield Problem(path_of(where), f"nested deeper than {MAX_DEPTH} levels")
            continue
        if isinstance(node, dict):
            for key, value in node.items():
                yield from _bad_text(key, (*where, key), what="key")
                stack.append((value, (*where, key)))
        elif isinstance(node, list):
            stack.extend((value, (*where, index)) for index, value in enumerate(node))
        elif isinstance(node, str):
            yield from _bad_text(node, where, what="value")


def _bad_text(text: str, where: tuple[str | int, ...], *, what: str) -> Iterator[Problem]:
    if "\x00" in text:
        yield Problem(path_of(where), f"the {what} contains a NUL character (\\u0000)")
    elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        yield Problem(path_of(where), f"the {what} contains an unpaired surrogate (invalid Unicode)")


# --- the schema ---------------------------------------------------------------------------


def schema_problems(document: Any) -> list[Problem]:
    problems = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        problems.extend(_explain(error))
    return problems


def _explain(error: ValidationError) -> list[Problem]:
    """One schema error as precise problems: an ``anyOf`` (arguments, transports) is
    explained by the branch its ``type`` picked, not as "not valid under any"."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[ValidationError]] = defaultdict(list)
        for sub in error.context:
            branches[sub.schema_path[0]].append(sub)
        # A branch failing only on other things than its discriminator (an enum or a
        # const) is the one the publisher meant.
        meant = [errs for errs in branches.values() if not any(e.validator in ("enum", "const") for e in errs)]
        if len(meant) == 1:
            return [problem for sub in meant[0] for problem in _explain(sub)]
        if all(e.validator == "required" for e in error.context):
            names = ", ".join(sorted({str(e.message).split("'")[1] for e in error.context}))
            return [Problem(path_of(error.absolute_path), f"needs one of: {names}")]
        enums = [e for e in error.context if e.validator == "enum"]
        if not meant and enums and len({tuple(e.absolute_path) for e in enums}) == 1:
            allowed = sorted({str(v) for e in enums for v in e.validator_value})
            return [
                Problem(
                    path_of(enums[0].absolute_path),
                    f"{json.dumps(enums[0].instance)} is not one of: {', '.join(allowed)}",
                )
            ]
    return [_problem(error)]


def _problem(error: ValidationError) -> Problem:
    where = list(error.absolute_path)
    value, rule = error.instance, error.validator_value
    match error.validator:
        case "required":
            missing = re.match(r"^'(.+)' is a required property$", error.message)
            name = missing.group(1) if missing else "?"
            return Problem(path_of([*where, name]), "is required")
        case "type":
            return Problem(path_of(where), f"must be {_article(rule)}, not {json_kind(value)}")
        case "maxLength":
            return Problem(path_of(where), f"is {len(value)} characters long; at most {rule} are allowed")
        case "minLength":
            return Problem(path_of(where), f"must be at least {rule} character{'s' if rule != 1 else ''} long")
        case "enum":
            return Problem(path_of(where), f"{json.dumps(value)} is not one of: {', '.join(map(str, rule))}")
        case "pattern":
            hint = _PATTERN_HINTS.get(where[-1] if where else "", "")
            return Problem(path_of(where), f"{json.dumps(value)} does not match the pattern {rule}", hint=hint)
        case "format":
            return Problem(
                path_of(where),
                f"{json.dumps(value)} is not a valid URI",
                hint="An absolute URL, e.g. https://example.com/…",
            )
        case "not" if isinstance(rule, dict) and rule.get("const") == "latest":
            return Problem(
                path_of(where), NOT_LATEST, hint="Pin the exact version the package registry has, e.g. 1.0.2."
            )
    return Problem(path_of(where), error.message)


def _article(rule: Any) -> str:
    names = rule if isinstance(rule, list) else [rule]
    return " or ".join(("an " if n in ("object", "array", "integer") else "a ") + str(n) for n in names)


_PATTERN_HINTS = {
    "name": "namespace/name in reverse-DNS form, e.g. io.github.yourname/weather.",
    "fileSha256": "64 lower-case hexadecimal characters (sha256sum of the file).",
    "url": "An http(s) URL without spaces.",
}


# --- the registry's own rules -------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, item in enumerate(value if isinstance(value, list) else []):
        if isinstance(item, dict):
            yield index, item


def looks_like_range(version: str) -> bool:
    trimmed = version.strip()
    if any(pattern.match(trimmed) for pattern in _RANGES):
        return True
    return bool(_WILDCARD.match(trimmed)) and any(ch in trimmed for ch in "xX*")


def _version_problems(value: Any, where: list[str | int]) -> Iterator[Problem]:
    if not isinstance(value, str):
        return
    if value == "latest":
        yield Problem(path_of(where), NOT_LATEST, hint="Pin the exact version, e.g. 1.0.2.")
    elif looks_like_range(value):
        yield Problem(path_of(where), f"{json.dumps(value)} is a version range; give one specific version")


def _https_problems(value: Any, where: list[str | int], what: str) -> Iterator[Problem]:
    if not isinstance(value, str) or not value:
        return
    if urlsplit(value).scheme != "https" or not urlsplit(value).netloc:
        yield Problem(path_of(where), f"{what} must be an absolute https URL")


def rule_problems(document: dict[str, Any]) -> list[Problem]:
    """The registry's checks beyond the schema that need no network
    (``internal/validators/validators.go`` in modelcontextprotocol/registry)."""
    problems: list[Problem] = []
    declared = document.get("$schema")
    if declared is None:
        problems.append(Problem("$.$schema", "is required", hint=f'Add "$schema": "{CURRENT_SCHEMA}".'))
    elif declared != CURRENT_SCHEMA:
        older = next((date for date in OLDER_SCHEMAS if isinstance(declared, str) and f"/{date}/" in declared), None)
        message = (
            f"is the {older} schema; MCPNest accepts only the current one, 2025-12-11"
            if older
            else "is not the official server.json schema"
        )
        problems.append(
            Problem(
                "$.$schema",
                message,
                hint=f'Use "$schema": "{CURRENT_SCHEMA}" and check what changed since '
                "(the CHANGELOG of the registry's server.json reference).",
            )
        )
    name = document.get("name")
    # The schema's pattern reports the grossly wrong names; this, the ones only the
    # registry's stricter rule refuses ("a./b-").
    if isinstance(name, str) and re.match(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$", name) and not SERVER_NAME.match(name):
        problems.append(
            Problem(
                "$.name",
                f"{json.dumps(name)} is not namespace/name (each part starting and ending with a letter or digit)",
                hint=_PATTERN_HINTS["name"],
            )
        )
    problems.extend(_version_problems(document.get("version"), ["version"]))
    problems.extend(_https_problems(document.get("websiteUrl"), ["websiteUrl"], "websiteUrl"))
    title = document.get("title")
    if isinstance(title, str) and title and not title.strip():
        problems.append(Problem("$.title", "cannot be only whitespace"))
    for index, icon in _dicts(document.get("icons")):
        problems.extend(_https_problems(icon.get("src"), ["icons", index, "src"], "an icon's src"))
    repository = _dict(document.get("repository"))
    if isinstance(repository.get("url"), str) and urlsplit(repository["url"]).scheme not in ("https", "http"):
        problems.append(Problem("$.repository.url", "must be an http(s) URL"))
    subfolder = repository.get("subfolder")
    if isinstance(subfolder, str) and (subfolder.startswith("/") or ".." in subfolder.split("/") or "\\" in subfolder):
        problems.append(Problem("$.repository.subfolder", "must be a clean relative path (no leading /, no ..)"))
    for index, package in _dicts(document.get("packages")):
        where: list[str | int] = ["packages", index]
        identifier = package.get("identifier")
        if isinstance(identifier, str) and any(ch.isspace() for ch in identifier):
            problems.append(Problem(path_of([*where, "identifier"]), "must not contain spaces"))
        problems.extend(_version_problems(package.get("version"), [*where, "version"]))
        for field in ("runtimeArguments", "packageArguments"):
            for position, argument in _dicts(package.get(field)):
                flag = argument.get("name")
                if argument.get("type") == "named" and isinstance(flag, str) and re.search(r"[<>\s$]", flag):
                    problems.append(
                        Problem(
                            path_of([*where, field, position, "name"]),
                            f"{json.dumps(flag)} is not a flag name",
                            hint='Only the flag (e.g. "--port"); its value goes in value or default.',
                        )
                    )
    meta = _dict(document.get("_meta"))
    if PUBLISHER_META in meta:
        size = len(json.dumps(meta[PUBLISHER_META], separators=(",", ":"), ensure_ascii=False).encode())
        if size > PUBLISHER_META_MAX:
            problems.append(
                Problem(path_of(["_meta", PUBLISHER_META]), f"is {size} bytes of JSON; at most {PUBLISHER_META_MAX}")
            )
    return problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            out.append(problem)
    return out
