"""The toolkit's request validator, with what MCPNest adds: a refresh token presented
after it was rotated or revoked is put on the audit trail (the toolkit has already revoked
its whole family, RFC 9700 §4.14.2)."""

from __future__ import annotations

import hashlib

from oauth2_provider.models import RefreshToken
from oauth2_provider.oauth2_validators import OAuth2Validator

from apps.oauth import services


class Validator(OAuth2Validator):
    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        if not valid and isinstance(refresh_token, str):
            checksum = hashlib.sha256(refresh_token.encode()).hexdigest()
            presented = (
                RefreshToken.objects.select_related("application", "user").filter(token_checksum=checksum).first()
            )
            if presented is not None and presented.revoked is not None and presented.token_family:
                # oauthlib's request carries Django's META as its headers.
                services.refresh_reuse_detected(refresh_token=presented, ip=request.headers.get("REMOTE_ADDR"))
        return valid
