"""The gateway's JSON (``relay.codec.wire_json``, ``parse_json``): orjson where it can, the
standard library for what orjson refuses, and the same values either way, hostile input
included."""

from __future__ import annotations

import json

import pytest

from relay.codec import parse_json, wire_json

HOSTILE = [
    {"name": "x\u0000", "id": "\ud800"},  # a NUL, a lone surrogate
    {"id": 2**70, "code": -(2**64)},  # beyond 64 bits
    {"nested": [[[[{"a": 1.5e300}]]]], "text": "d\u00e9j\u00e0 \U0001f600"},
    {1: "a non-string key"},
]


@pytest.mark.parametrize("value", HOSTILE)
def test_whatever_the_standard_library_encodes_is_encoded_and_parses_back_the_same(value):
    encoded = wire_json(value)
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == json.loads(json.dumps(value))
    assert parse_json(encoded) == json.loads(encoded)


def test_common_messages_are_compact_utf8():
    assert wire_json({"jsonrpc": "2.0", "id": 1, "result": {"text": "caf\u00e9"}}) == (
        '{"jsonrpc":"2.0","id":1,"result":{"text":"café"}}'.encode()
    )


@pytest.mark.parametrize(
    "text",
    [
        b'{"id": "\\ud800", "n": 1}',  # a lone surrogate escape: orjson refuses it
        b'{"n": NaN, "m": -Infinity}',  # not JSON, but the standard library reads it
        '{"a": "b"}'.encode("utf-16"),  # UTF-16 with a BOM
        b'{"big": 123456789012345678901234567890, "id": -18446744073709551617}',  # orjson: floats
        '{"id": 12345678901234567890123}',  # text, not bytes
        b"[" * 300 + b"]" * 300,  # deeper than orjson's limit
    ],
)
def test_what_orjson_refuses_is_parsed_as_the_standard_library_parses_it(text):
    expected = json.loads(text)
    parsed = parse_json(text)
    assert repr(parsed) == repr(expected)  # repr: NaN is not equal to itself


@pytest.mark.parametrize("text", [b"{", b'{"a": 1,}', b"\xff\xfe\x00", b"[" * 100_000])
def test_invalid_json_raises_the_standard_librarys_errors(text):
    with pytest.raises((ValueError, RecursionError)) as expected:
        json.loads(text)
    with pytest.raises(type(expected.value)) as raised:
        parse_json(text)
    assert str(raised.value) == str(expected.value)
