"""Turning hostile input into audit rows that any database stores and any reviewer can read.

A tool call's text comes from MCP clients and upstream servers (tool names, request ids,
client names) and reaches us replayed from the gateway's spool as JSON, so anything can
be in it. PostgreSQL refuses a NUL in a text column, UTF-8 cannot encode a lone surrogate
("\\ud800"), an ``integer`` column refuses 2**40: one such value used to fail the whole
batch, and the batch was retried until it was dropped. Here every value is made storable
before it is written, and nothing is changed silently:

* **Text** (``clean_text``): NUL and other control characters except tab are dropped,
  unencodable code points (lone surrogates) become their visible escape (``\\ud800``), and
  the result is truncated to the column's length.
* **Numbers**: ``status`` must be an int in 100–599, else it is stored as 0;
  ``error_code`` must be an int in the 32-bit signed range, else it is stored empty (None)
  ("abc", 1.5e300, 2**40); ``latency_ms`` is clamped to 0–2,147,483,647.
  ``shadow_blocked`` is coerced to a boolean. ``record_id`` must be 32 lowercase hex, else
  it is stored empty (the row then loses replay protection, nothing else).
* **Notes**: a row whose values had to be changed is still a normal row, but its
  ``quarantine`` text says so: ``cleaned: <field>: <what was done>; …`` followed by
  ``original: <the changed fields' original values as JSON>``. Reviewers find these rows
  with the admin's "quarantined" filter and in ``audit_verify``'s count.
* **Quarantine rows** (``quarantine_row``): a dict that cannot be a ToolCall at all
  (unknown keys, a text field holding a list, an unparseable ``created_at``, a missing or
  non-integer ``workspace_id`` or ``member_id``), or a row the database refused even
  after cleaning, becomes a row with safe values only: its workspace (the global chain
  when ``workspace_id`` is unusable), its ``created_at`` (now when unusable), its
  ``record_id`` when valid, method ``(quarantined)``, status 0, and ``quarantine`` =
  ``quarantined: <reason>`` plus the whole original as JSON.

The JSON in a note is ASCII only (``ensure_ascii``; anything not JSON is written with
``repr``), NUL and lone surrogates appear as the visible text ``\\u0000`` / ``\\ud800`` (so the
note itself could even be loaded into a PostgreSQL ``jsonb``), every string is cut to 2,000
characters and the note to 8,192.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.audit.models import ToolCall

NOTE_MAX = 8192
NOTE_STRING_MAX = 2000
INT32 = (-(2**31), 2**31 - 1)
POSITIVE_INT32_MAX = 2**31 - 1
ID_MAX = 2**63 - 1
# Years a created_at may have: others cannot be stored or compared everywhere.
YEARS = (1970, 9998)

_RECORD_ID = re.compile(r"[0-9a-f]{32}")
# What a text column must not get: C0 controls but tab, DEL, C1 controls, lone surrogates.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")

TEXT_FIELDS: dict[str, int] = {
    name: ToolCall._meta.get_field(name).max_length
    for name in (
        "member_repr",
        "token_prefix",
        "oauth_client",
        "server_slug",
        "tool_name",
        "method",
        "client_name",
        "client_version",
        "session_id",
        "request_id",
    )
}
FIELDS = frozenset(
    {
        *TEXT_FIELDS,
        "workspace_id",
        "member_id",
        "status",
        "error_code",
        "latency_ms",
        "client_ip",
        "shadow_blocked",
        "created_at",
        "record_id",
    }
)
# The columns a tool call's row gets from its dict (``tool_call_values``); the chain sets the
# others. What a column holds when the dict leaves it out: the model fields' defaults.
ROW_FIELDS = (
    *TEXT_FIELDS,
    *("workspace_id", "member_id", "created_at", "status", "error_code", "latency_ms"),
    *("client_ip", "shadow_blocked", "record_id", "quarantine"),
)
ROW_DEFAULTS: dict[str, Any] = {
    name: ToolCall._meta.get_field(name).get_default()  # by attname too: member_id
    for name in ROW_FIELDS
    if name not in ("workspace_id", "created_at", "method", "status", "record_id", "quarantine")
}


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def clean_text(value: str, max_length: int | None = None) -> tuple[str, str]:
    """``value`` made storable, and what was done to it ("" if nothing)."""
    if _UNSAFE.search(value) is None and (max_length is None or len(value) <= max_length):
        return value, ""  # the fast path: nearly every value
    done = []
    escaped = _SURROGATE.sub(_escape, value)
    if escaped != value:
        done.append(f"escaped {len(value) - len(_SURROGATE.sub('', value))} unencodable character(s)")
    cleaned = _UNSAFE.sub("", escaped)
    if len(cleaned) != len(escaped):
        done.append(f"removed {len(escaped) - len(cleaned)} control character(s)")
    if max_length is not None and len(cleaned) > max_length:
        done.append(f"truncated from {len(cleaned)} to {max_length} characters")
        cleaned = cleaned[:max_length]
    return cleaned, ", ".join(done)


def clean_json(value: Any) -> Any:
    """A JSON value any backend stores: NUL dropped and lone surrogates escaped in every
    string (keys too), non-finite floats as text (PostgreSQL's jsonb refuses NaN)."""
    if isinstance(value, str):
        return _SURROGATE.sub(_escape, value.replace("\x00", "")) if _NUL_OR_SURROGATE.search(value) else value
    if isinstance(value, Mapping):
        return {clean_json(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _visible(value: Any, depth: int = 0) -> Any:
    """A copy in which NUL and surrogates are the visible text ``\\u0000``, strings are cut short."""
    if depth > 20:
        return "...(nested too deep)"
    if isinstance(value, str):
        if len(value) > NOTE_STRING_MAX:
            value = f"{value[:NOTE_STRING_MAX]}...({len(value)} characters)"
        return _NUL_OR_SURROGATE.sub(_escape, value)
    if isinstance(value, Mapping):
        return {
            _visible(k if isinstance(k, str) else repr(k), depth + 1): _visible(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_visible(v, depth + 1) for v in value[:200]]
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value[:NOTE_STRING_MAX]))
    return value


def as_json(value: Any) -> str:
    """``value`` as ASCII JSON safe for any text column (see the module docstring)."""
    try:
        return json.dumps(_visible(value), ensure_ascii=True, default=repr, allow_nan=True)
    except Exception:  # whatever it is, the note still gets written
        return json.dumps(f"<{type(value).__name__} that cannot be written as JSON>")


def note(kind: str, reason: str, original: Any) -> str:
    """A ``quarantine`` text: "<kind>: <reason>" and the original values, at most NOTE_MAX characters."""
    reason, _ = clean_text(reason, NOTE_MAX // 2)
    text = f"{kind}: {reason}\noriginal: {as_json(original)}"
    return text if len(text) <= NOTE_MAX else f"{text[: NOTE_MAX - 40]}...(truncated, {len(text)} characters)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id_or_problem(values: Mapping, name: str, *, required: bool) -> tuple[int | None, str]:
    value = values.get(name)
    if value is None and not required:
        return None, ""
    if _is_int(value) and 1 <= value <= ID_MAX:
        return value, ""
    return None, f"{name} is {'missing' if value is None else 'not a positive integer'}"


def _created_at(value: Any) -> tuple[datetime | None, str]:
    if value is None:
        return timezone.now(), ""
    moment = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = parse_datetime(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        return None, "created_at is not an ISO 8601 date-time"
    if not YEARS[0] <= moment.year <= YEARS[1]:
        return None, f"created_at is outside the years {YEARS[0]} to {YEARS[1]}"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the gateway writes UTC
    return moment, ""


@functools.lru_cache(maxsize=4096)  # a gateway sees the same few client addresses again and again
def _ip(value: str) -> str:
    """``value`` as a normalised IP address, or "" if it is not one."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


def _record_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _RECORD_ID.fullmatch(value) else None


def quarantine_values(values: Any, reason: str) -> dict[str, Any]:
    """The column values of a row that keeps only safe values of ``values`` and, in
    ``quarantine``, all of it (``ROW_DEFAULTS`` for the rest)."""
    mapping = values if isinstance(values, Mapping) else {}
    workspace_id, _ = _id_or_problem(mapping, "workspace_id", required=True)
    created_at, problem = _created_at(mapping.get("created_at"))
    return {
        **ROW_DEFAULTS,
        "workspace_id": workspace_id,
        "created_at": timezone.now() if problem else created_at,
        "method": ToolCall.QUARANTINED_METHOD,
        "status": 0,
        "record_id": _record_id(mapping.get("record_id")),
        "quarantine": note("quarantined", reason, values),
    }


def quarantine_row(values: Any, reason: str) -> ToolCall:
    """A row that keeps only safe values of ``values`` and, in ``quarantine``, all of it."""
    return ToolCall(**quarantine_values(values, reason))


def tool_call_from_dict(values: Any) -> ToolCall:
    """A ToolCall for one recorded call, never an exception (see the module docstring)."""
    return ToolCall(**tool_call_values(values))


def tool_call_values(values: Any) -> dict[str, Any]:
    """The column values of the ToolCall row for one recorded call, never an exception (see
    the module docstring): a value for every name in ``ROW_FIELDS``, of the type the model
    instance ``ToolCall(**values)`` would hold (``chain.append_tool_calls`` hashes and
    inserts them as they are, without building the instance)."""
    if not isinstance(values, Mapping):
        return quarantine_values(values, f"not a dict of ToolCall fields but a {type(values).__name__}")
    problems = []
    if not FIELDS.issuperset(values):
        unknown = [key for key in values if key not in FIELDS]
        problems.append(f"unknown field(s) {', '.join(sorted(repr(k) for k in unknown))}")
    workspace_id, problem = _id_or_problem(values, "workspace_id", required=True)
    problems.append(problem)
    member_id, problem = _id_or_problem(values, "member_id", required=False)
    problems.append(problem)
    created_at, problem = _created_at(values.get("created_at"))
    problems.append(problem)
    texts: dict[str, Any] = {}
    measured = True  # whether every text is a str known to fit its column (nearly always)
    for name, max_length in TEXT_FIELDS.items():
        value = values.get(name)
        if type(value) is str:
            measured = measured and len(value) <= max_length
        elif value is None:
            value = ""
        else:
            measured = False
            if _is_int(value) or isinstance(value, float):
                value = str(value)
            elif not isinstance(value, str):
                problems.append(f"{name} is a {type(value).__name__}, not text")
        texts[name] = value
    problems = [p for p in problems if p]
    if problems:
        return quarantine_values(values, "; ".join(problems))

    done: list[str] = []
    # One look at all the text in the usual case, where nothing needs cleaning (tab, the
    # separator, is allowed); otherwise clean_text says what it did to which field.
    if not measured or _UNSAFE.search("\t".join(texts.values())) is not None:
        for name, max_length in TEXT_FIELDS.items():
            texts[name], what = clean_text(texts[name], max_length)
            if what:
                done.append(f"{name}: {what}")

    status = values.get("status")
    if not (_is_int(status) and 100 <= status <= 599):
        done.append(f"status: {as_json(status)} is not an HTTP status (stored as 0)")
        status = 0

    error_code = values.get("error_code")
    if error_code is not None and not (_is_int(error_code) and INT32[0] <= error_code <= INT32[1]):
        done.append(f"error_code: {as_json(error_code)[:100]} is not a 32-bit integer (stored empty)")
        error_code = None

    latency = values.get("latency_ms")
    if latency is None:
        latency = 0
    elif isinstance(latency, int | float) and not isinstance(latency, bool) and math.isfinite(latency):
        clamped = min(max(int(latency), 0), POSITIVE_INT32_MAX)
        if clamped != int(latency):
            done.append(f"latency_ms: {as_json(latency)[:100]} is out of range (stored as {clamped})")
        latency = clamped
    else:
        done.append(f"latency_ms: {as_json(latency)[:100]} is not a number (stored as 0)")
        latency = 0

    shadow = values.get("shadow_blocked")
    if not isinstance(shadow, bool):
        coerced = shadow.strip().lower() in ("1", "true", "yes", "on") if isinstance(shadow, str) else bool(shadow)
        if not (shadow is None or (_is_int(shadow) and shadow in (0, 1))):
            done.append(f"shadow_blocked: {as_json(shadow)[:100]} is not a boolean (stored as {coerced})")
        shadow = coerced

    client_ip = values.get("client_ip") or ""
    if client_ip:
        ip = _ip(client_ip) if isinstance(client_ip, str) else ""
        if not ip:
            done.append("client_ip: not an IP address (stored empty)")
        client_ip = ip

    raw_record_id = values.get("record_id")
    record_id = _record_id(raw_record_id)
    if raw_record_id is not None and record_id is None:
        done.append("record_id: not 32 lowercase hex digits (stored empty)")

    quarantine = ""
    if done:
        changed = {what.split(":", 1)[0] for what in done}
        originals = {name: values[name] for name in sorted(changed) if name in values}
        quarantine = note("cleaned", "; ".join(done), originals)
    return {
        "workspace_id": workspace_id,
        "member_id": member_id,
        "created_at": created_at,
        "status": status,
        "error_code": error_code,
        "latency_ms": latency,
        "shadow_blocked": shadow,
        "client_ip": client_ip,
        "record_id": record_id,
        "quarantine": quarantine,
        **texts,
    }
