"""SCIM 2.0 provisioning: the IdP's credential, who it provisioned, and its groups.

A SCIM token belongs to one workspace, and that workspace is the tenant: every SCIM request
sees and changes only the workspace's members and the people its IdP provisioned
(``apps.scim.selectors.scim_users_for``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.rbac.roles import Role


class ScimTokenQuerySet(models.QuerySet):
    def active(self) -> ScimTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ScimToken(models.Model):
    """The bearer credential of one workspace's IdP: ``mns_`` + 48 lowercase hex (192 bits).

    Only the SHA-256 digest is stored; the raw token is shown once, when it is created.
    Revoked, never deleted: the audit trail keeps naming it by its prefix.
    """

    SCHEME = "mns"

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="scim_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="E.g. “Entra ID production”.")
    prefix = models.CharField(max_length=16, editable=False, help_text="Display prefix, e.g. mns_3f9a1b2c.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ScimTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "SCIM token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.workspace})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ScimIdentity(models.Model):
    """A person as one workspace's IdP knows them: its ``externalId`` for them, and whether
    the IdP created their account (``created_account``).

    Only an account the IdP created, and that belongs to no other workspace, is the IdP's to
    edit (name, email) and to switch off; anyone else it can only bring into and take out of
    its workspace (``apps.scim.services``).
    """

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="scim_identities")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scim_identities")
    external_id = models.CharField(max_length=254, blank=True)
    created_account = models.BooleanField(
        default=False, help_text="The account was created by this workspace's IdP (not linked to an existing one)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workspace", "user__email"]
        verbose_name = "SCIM identity"
        verbose_name_plural = "SCIM identities"
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="scim_identity_unique_user")]
        indexes = [models.Index(fields=["workspace", "external_id"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace}"


class ScimGroup(models.Model):
    """A group pushed by one workspace's IdP. With a ``role``, its members get that role in
    the workspace (the highest of their mapped groups wins; out of every mapped group, they
    fall back to Member). Without one, it is only mirrored."""

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="scim_groups")
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    display_name = models.CharField(max_length=254)
    external_id = models.CharField(max_length=254, blank=True)
    role = models.CharField(
        max_length=10,
        choices=Role.choices,
        blank=True,
        help_text="Members of this group get this role in the workspace (the highest mapped group wins). "
        "Empty: the group maps to no role.",
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="scim_groups")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workspace", "display_name"]
        verbose_name = "SCIM group"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "display_name"], name="scim_group_unique_name"),
            models.CheckConstraint(
                condition=models.Q(role="") | models.Q(role__in=Role.values), name="scim_group_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.workspace})"
