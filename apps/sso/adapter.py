"""How allauth's social sign-in behaves here: every OpenID Connect or SAML app is a
workspace's company IdP (``SsoConnection``), and it speaks only for its own domains.

* An IdP is trusted to vouch for addresses in its connection's e-mail domains, and only
  those: such an address counts as verified, and signs in (and links) the existing account
  that has it. An address outside them never links or creates an account.
* A first sign-in creates the account only when the connection has just-in-time
  provisioning (the membership follows, in ``apps.sso.services.sso_sign_in_record``).
* An app that no connection uses signs nobody in.
"""

from __future__ import annotations

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apps.sso.models import SsoConnection
from apps.sso.selectors import connection_for_app


def _email(sociallogin: SocialLogin) -> str:
    if sociallogin.email_addresses:
        return sociallogin.email_addresses[0].email or ""
    return getattr(sociallogin.user, "email", "") or ""


def _refuse(request: HttpRequest, reason: str) -> ImmediateHttpResponse:
    response = TemplateResponse(request, "sso/refused.html", {"reason": reason}, status=403)
    return ImmediateHttpResponse(response.render())


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def connection(self, sociallogin: SocialLogin) -> SsoConnection | None:
        return connection_for_app(sociallogin.provider.app)

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """Refuse a sign-in no connection vouches for, before allauth logs anyone in."""
        connection = self.connection(sociallogin)
        if connection is None or connection.workspace.is_deleted:
            raise _refuse(request, "This sign-in provider is not connected to a workspace.")
        # An identity already linked is the person's, whatever address the IdP now sends;
        # a new one must have an address in the connection's domains.
        if not sociallogin.is_existing and not connection.routes(_email(sociallogin)):
            raise _refuse(request, "Your company's identity provider did not send an address in its domains.")

    def is_email_verified(self, provider, email: str) -> bool:
        connection = connection_for_app(provider.app)
        if connection is not None and connection.routes(email):
            return True
        return super().is_email_verified(provider, email)

    def can_authenticate_by_email(self, login: SocialLogin, email: str) -> bool:
        connection = self.connection(login)
        return connection is not None and connection.routes(email)

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        connection = self.connection(sociallogin)
        return connection is not None and connection.jit_provisioning and connection.routes(_email(sociallogin))
