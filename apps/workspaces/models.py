"""Workspaces, the people in them, and invitations to join."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.rbac.roles import Role

SLUG_RE = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"
slug_validator = RegexValidator(
    SLUG_RE,
    "Use 1–50 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)


class Plan(models.TextChoices):
    TEAM = "team", "Team"
    ENTERPRISE = "enterprise", "Enterprise"


class Enforcement(models.TextChoices):
    OFF = "off", "Off — allowlists are not applied"
    SHADOW = "shadow", "Shadow — calls pass, would-be blocks are recorded"
    ENFORCE = "enforce", "Enforce — only allowed tools can be called"


class WorkspaceQuerySet(models.QuerySet):
    def active(self) -> WorkspaceQuerySet:
        return self.filter(deleted_at__isnull=True)

    def visible_to(self, user) -> WorkspaceQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.active().filter(memberships__user=user)


class Workspace(models.Model):
    """A team's governed space: members, tokens, upstream servers and one gateway URL.

    Deleting a workspace only marks it deleted: its audit trail stays verifiable and its
    slug is never handed to someone else.
    """

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.TEAM)
    enforcement = models.CharField(max_length=10, choices=Enforcement.choices, default=Enforcement.OFF)
    deny_by_default = models.BooleanField(
        default=False, help_text="Members without allowlist rules may call nothing (least privilege)."
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        default=200, validators=[MinValueValidator(1)], help_text="Gateway requests per minute per client IP."
    )
    audit_retention_days = models.PositiveIntegerField(
        default=settings.MCPNEST_AUDIT_RETENTION_DAYS, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Membership(models.Model):
    """A person's role in a workspace. One per (workspace, user)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workspace", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique_user"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.get_role_display()})"


class InvitationQuerySet(models.QuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


class Invitation(models.Model):
    """An emailed, single-use, expiring link to join a workspace with a given role.

    Only the SHA-256 digest of the link's secret is stored.
    """

    SCHEME = "mni"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "email"])]

    def __str__(self) -> str:
        return f"{self.email} → {self.workspace} ({self.get_role_display()})"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"
