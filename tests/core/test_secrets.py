"""Bearer secret helpers: shape, digest, display prefix and timing-safe matching."""

from __future__ import annotations

import hashlib
from unittest import mock

from apps.core import secrets


def test_generate_shape_digest_and_prefix():
    new = secrets.generate("mng")
    assert secrets.pattern("mng").match(new.raw)
    assert len(new.raw) == len("mng_") + 48 and new.raw[4:] == new.raw[4:].lower()
    assert new.digest == hashlib.sha256(new.raw.encode()).hexdigest() == secrets.digest(new.raw)
    assert new.prefix == new.raw[:12]


def test_generated_secrets_differ():
    assert len({secrets.generate("mnk").raw for _ in range(100)}) == 100


def test_pattern_is_exact():
    good = "mnk_" + "0123456789abcdef" * 3
    pattern = secrets.pattern("mnk")
    assert pattern.match(good)
    for bad in [good.upper(), good[:-1], good + "0", "x" + good, good.replace("mnk_", "mng_"), good[:-1] + "g"]:
        assert not pattern.match(bad), bad
    # The scheme is escaped, not read as a regular expression.
    assert not secrets.pattern("m.k").match("mnk_" + "0" * 48)


def test_matches_is_timing_safe_and_exact():
    new = secrets.generate("mng")
    assert secrets.matches(new.raw, new.digest)
    assert not secrets.matches(new.raw + "0", new.digest)
    with mock.patch("apps.core.secrets.hmac.compare_digest", return_value=True) as compare:
        assert secrets.matches("anything", "whatever")
    compare.assert_called_once_with(secrets.digest("anything"), "whatever")
