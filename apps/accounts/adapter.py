from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.urls import Resolver404, resolve


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        """Open when MCPNEST_SIGNUP_OPEN says so; otherwise only for someone holding a
        pending invitation (the sign-up page's ``next`` is the invitation's link)."""
        if settings.ACCOUNT_SIGNUP_OPEN:
            return True
        return _pending_invitation_in(request)


def _pending_invitation_in(request) -> bool:
    from apps.workspaces.services import invitation_lookup

    target = request.POST.get("next") or request.GET.get("next") or ""
    try:
        match = resolve(target.split("?")[0])
    except Resolver404:
        return False
    if match.view_name != "portal:invitation-accept":
        return False
    invitation = invitation_lookup(match.kwargs["secret"])
    return invitation is not None and invitation.status == "pending" and not invitation.workspace.is_deleted
