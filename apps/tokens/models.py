"""Gateway tokens: the bearer credentials AI clients present to /api/gw/<slug>."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class TokenQuerySet(models.QuerySet):
    def active(self) -> TokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class GatewayToken(models.Model):
    """``mng_`` + 48 lowercase hex (192 bits). Only the SHA-256 digest is stored.

    A member token acts as one member (their allowlist applies, calls are attributed to
    them); a workspace token is for system use and has full access.
    """

    SCHEME = "mng"

    class Kind(models.TextChoices):
        MEMBER = "member", "Member token"
        WORKSPACE = "workspace", "Workspace token"

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="tokens")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MEMBER)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="gateway_tokens",
        help_text="The member this token acts as (member tokens only).",
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, help_text="Display prefix, e.g. mng_3f9a1b2c.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="member", user__isnull=False) | models.Q(kind="workspace", user__isnull=True)),
                name="token_kind_matches_user",
            ),
        ]
        indexes = [models.Index(fields=["workspace", "prefix"], name="token_ws_prefix")]

    def __str__(self) -> str:
        return f"{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"
