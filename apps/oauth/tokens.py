"""The shapes of the tokens the authorization server issues.

Like ``mng_`` gateway tokens, they carry 192 random bits behind a scheme that says what
they are (``mna_`` access, ``mnr_`` refresh), so secret scanners recognise a leaked one
and the gateway refuses any other shape before a lookup. Only their SHA-256 digests are
stored (``COMPLIANT_BCP_RFC9700_TOKEN_STORAGE``).
"""

from __future__ import annotations

from apps.core import secrets

ACCESS_SCHEME = "mna"
REFRESH_SCHEME = "mnr"


def access_token(request, refresh_token: bool = False) -> str:
    return secrets.generate(ACCESS_SCHEME).raw


def refresh_token(request, refresh_token: bool = False) -> str:
    return secrets.generate(REFRESH_SCHEME).raw
