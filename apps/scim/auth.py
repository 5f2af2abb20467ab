"""Who is calling /scim/v2/: a workspace's IdP, by its SCIM token.

django-scim2 wraps every one of its views' ``dispatch`` in the class named by the
``AUTH_CHECK_MIDDLEWARE`` setting; this is ours. It replaces the library's check (a
signed-in Django user) with the bearer token, and puts the token on the request
(``request.scim_token``): its workspace is the tenant every view and adapter works in.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django_scim import constants

from apps.scim.models import ScimToken
from apps.scim.selectors import scim_token_verify
from apps.scim.services import scim_token_touch

WWW_AUTHENTICATE = 'Bearer realm="scim"'


def scim_error(status: int, detail: str, scim_type: str | None = None) -> HttpResponse:
    """An RFC 7644 §3.12 error response."""
    body: dict[str, object] = {"schemas": [constants.SchemaURI.ERROR], "detail": detail, "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    return HttpResponse(json.dumps(body), status=status, content_type=constants.SCIM_CONTENT_TYPE)


def bearer(request: HttpRequest) -> str:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    return raw.strip() if scheme.lower() == "bearer" else ""


class ScimBearerAuth:
    """Refuses a missing, wrong or revoked SCIM token with 401 and a SCIM error body."""

    def __init__(self, get_response: Callable[..., HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        token: ScimToken | None = scim_token_verify(bearer(request))
        if token is None:
            response = scim_error(401, "A valid SCIM token is required (Authorization: Bearer mns_…).")
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
            return response
        scim_token_touch(token)
        request.scim_token = token
        return self.get_response(request, *args, **kwargs)
