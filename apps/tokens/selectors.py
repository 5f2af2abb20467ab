"""Reads of gateway tokens."""

from __future__ import annotations

from apps.tokens.models import GatewayToken


def token_for_digest(digest: str) -> GatewayToken | None:
    """The one token check: the usable token with this digest, or None.

    Usable means not revoked, not expired, its workspace not deleted and, for a member
    token, its person still active. The portal, the API and the gateway (which caches the
    answer, see ``apps.gateway.runtime.state``) all ask this.
    """
    token = GatewayToken.objects.active().select_related("workspace", "user").filter(digest=digest).first()
    if token is None or token.workspace.is_deleted:
        return None
    if token.user_id is not None and not token.user.is_active:
        return None  # a deactivated person's tokens stop working with their account
    return token
