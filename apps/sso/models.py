"""A workspace's single sign-on connection: which company IdP signs its people in, and how.

The IdP itself (OpenID Connect client id and secret, or SAML entity id, SSO URL and
certificate) is an allauth ``SocialApp``; this row ties one such app to one workspace and
says what a sign-in through it may do.
"""

from __future__ import annotations

from allauth.socialaccount.models import SocialApp
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.rbac.roles import Role
from apps.workspaces.models import Workspace

PROVIDERS = ("openid_connect", "saml")
DOMAIN_RE = r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$"
_domain = RegexValidator(DOMAIN_RE, "Not a domain name.")
# When several groups map to roles, the highest wins.
ROLE_RANK = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}


def email_domain(email: str) -> str:
    return (email or "").rpartition("@")[2].strip().lower()


class SsoConnection(models.Model):
    """One workspace's company IdP (an allauth ``SocialApp``) and its sign-in rules.

    Invariants (``clean``): the app is an OpenID Connect or SAML app with a provider id
    (its SocialAccounts are told apart by it), and no e-mail domain routes to two
    connections, so the login page always knows where to send an address.
    """

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="sso_connection")
    social_app = models.OneToOneField(
        SocialApp,
        on_delete=models.PROTECT,
        related_name="sso_connection",
        help_text="The IdP: an OpenID Connect or SAML social application (allauth).",
    )
    email_domains = models.JSONField(
        default=list,
        blank=True,
        help_text='Addresses in these domains sign in through this IdP, e.g. ["acme.com", "acme.co.uk"]. '
        "The IdP is trusted to vouch for them: it may sign in the existing account with such an address.",
    )
    sso_required = models.BooleanField(
        default=False,
        help_text="Members who have never signed in through this IdP cannot use the workspace or its gateway.",
    )
    jit_provisioning = models.BooleanField(
        "just-in-time provisioning",
        default=False,
        help_text="A first sign-in through this IdP creates the account and the membership.",
    )
    groups_claim = models.CharField(
        max_length=200,
        default="groups",
        help_text="The OIDC claim or SAML attribute that lists the person's IdP groups.",
    )
    group_roles = models.JSONField(
        default=dict,
        blank=True,
        help_text='IdP group → role for members created by a sign-in, e.g. {"mcp-admins": "admin"}. '
        "The highest mapped role wins; no mapped group means Member.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SSO connection"
        ordering = ["workspace__slug"]

    def __str__(self) -> str:
        return f"{self.workspace} via {self.social_app}"

    @property
    def identity_provider(self) -> str:
        """``SocialAccount.provider`` of the identities this IdP creates (allauth's rule)."""
        return self.social_app.provider_id or self.social_app.provider

    def routes(self, email: str) -> bool:
        return email_domain(email) in self.email_domains

    def role_for_groups(self, groups: list[str]) -> str:
        mapped = [self.group_roles[group] for group in groups if group in self.group_roles]
        return max(mapped, key=lambda role: ROLE_RANK[role], default=Role.MEMBER)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.email_domains, list) or not all(isinstance(d, str) for d in self.email_domains):
            errors["email_domains"] = 'A list of domain names, e.g. ["acme.com"].'
        else:
            self.email_domains = sorted({d.strip().lower().lstrip("@") for d in self.email_domains if d.strip()})
            for domain in self.email_domains:
                try:
                    _domain(domain)
                except ValidationError:
                    errors["email_domains"] = f"{domain!r} is not a domain name."
            taken = [
                f"{domain} ({other.workspace})"
                for other in SsoConnection.objects.exclude(pk=self.pk).select_related("workspace")
                for domain in self.email_domains
                if domain in other.email_domains
            ]
            if taken and "email_domains" not in errors:
                errors["email_domains"] = "Already routed to another connection: " + ", ".join(taken)
        if not isinstance(self.group_roles, dict) or not all(
            isinstance(group, str) and role in Role.values for group, role in self.group_roles.items()
        ):
            errors["group_roles"] = f"An object of group name → one of {', '.join(Role.values)}."
        if self.social_app_id is not None:
            if self.social_app.provider not in PROVIDERS:
                errors["social_app"] = "Choose an OpenID Connect or SAML application."
            elif not self.social_app.provider_id:
                errors["social_app"] = "Give the application a provider ID: it names this IdP's identities."
        if errors:
            raise ValidationError(errors)
