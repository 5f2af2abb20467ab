"""How allauth signs people up: closed, except to someone holding a pending invitation."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from django.urls import Resolver404, resolve

from apps.workspaces.models import Invitation
from apps.workspaces.selectors import invitation_lookup


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        """Open when MCPNEST_SIGNUP_OPEN says so; otherwise only for someone holding a
        pending invitation (the sign-up page's ``next`` is the invitation's link)."""
        if settings.ACCOUNT_SIGNUP_OPEN:
            return True
        return _pending_invitation_in(request) is not None

    def is_email_verified(self, request, email: str) -> bool:
        """An invitation link proves its address: whoever signs up with it as the invited
        e-mail needs no second confirmation mail."""
        invitation = _pending_invitation_in(request)
        if invitation is not None and invitation.email.lower() == (email or "").lower():
            return True
        return super().is_email_verified(request, email)


def _pending_invitation_in(request: HttpRequest) -> Invitation | None:
    """The pending invitation whose link is this sign-up's ``next``, if any."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    try:
        match = resolve(target.split("?")[0])
    except Resolver404:
        return None
    if match.view_name != "portal:invitation-accept":
        return None
    invitation = invitation_lookup(match.kwargs["secret"])
    if invitation is None or invitation.status != "pending" or invitation.workspace.is_deleted:
        return None
    return invitation
