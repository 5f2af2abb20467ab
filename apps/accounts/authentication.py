"""DRF authentication with a personal API key: ``Authorization: Bearer mnk_...``."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from apps.accounts.services import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip().startswith("mnk_"):
            return None
        key = api_key_authenticate(raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API key. Create a new one under Account → API keys."
            )
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
