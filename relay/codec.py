"""The gateway's JSON on the wire and in its audit spool: orjson where it can, the standard
library for what orjson refuses or would read otherwise. Not in ``relay.protocol``: the
bridge's image has no orjson."""

import json
import re
from typing import Any

import orjson

from relay.protocol import compact_json


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
