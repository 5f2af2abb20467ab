"""JSON-RPC and MCP constants and JSON encoding shared by the gateway and the bridge. Imports
nothing but the standard library and orjson, so the bridge (which starts with every hosted
instance) does not load the gateway's engine."""

import json
import re
from typing import Any

import orjson

# JSON-RPC error codes. -32000..-32019 are implementation-defined.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Compact JSON, as every message on the wire is encoded: one encoder for the process
# (``json.dumps`` with options builds a new one per call, on every message).
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def wire_json(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8: orjson (a fifth of the standard library's cost,
    on every message the gateway sends), or ``compact_json`` for what orjson refuses and
    the standard library takes: lone surrogates (escaped), integers beyond 64 bits,
    non-string keys."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return compact_json(value).encode()


# 19 digits in a row: perhaps an integer beyond 64 bits, which orjson would read as a float
# (an id of 2**70 would come back as 1.1805916207174113e+21).
_LONG_NUMBER = re.compile(rb"\d{19}")
_LONG_NUMBER_TEXT = re.compile(r"\d{19}")


def parse_json(data: bytes | str) -> Any:
    """JSON text parsed with orjson, or as the standard library parses what orjson refuses
    or reads otherwise (lone surrogate escapes, NaN, UTF-16 and UTF-32, deeper nesting,
    integers beyond 64 bits): the same values either way, and the standard library's errors."""
    if (_LONG_NUMBER if isinstance(data, bytes) else _LONG_NUMBER_TEXT).search(data) is not None:
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


# Requests a server may send a 2025-era client, and the capability the client declares for each.
CLIENT_CAPABILITY_OF = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
# What a 2025-era session declares to a server on behalf of clients it relays requests to
# (the gateway with an upstream, the bridge with its child): each request reaches a client
# that declared the capability too, and is refused otherwise.
RELAYED_CLIENT_CAPABILITIES = {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {"listChanged": True}}


def json_kind(value: object) -> str:
    """A JSON value's type in words ("an array"), for messages about malformed input."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
