"""JSON-RPC and MCP constants shared by the gateway and the bridge. Imports nothing but the
standard library, so the bridge (which starts with every hosted instance, in an image with
nothing else installed for it) does not load the gateway's engine."""

import json

# JSON-RPC error codes. -32000..-32019 are implementation-defined.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Compact JSON, as every message on the wire is encoded: one encoder for the process
# (``json.dumps`` with options builds a new one per call, on every message).
compact_json = json.JSONEncoder(separators=(",", ":")).encode


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
