"""Hosted MCP servers: the catalog of images a workspace may run, and the instances it runs.

An instance's credentials (``env``) are encrypted at rest with MCPNEST_ENCRYPTION_KEYS and
never shown again: not in ``str()``, the admin, audit rows or logs (``services.mask``).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.core import crypto

image_slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?$",
    "Use 1–30 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)


class Profile(models.TextChoices):
    SMALL = "small", "Small (0.25 vCPU, 256 MB)"
    MEDIUM = "medium", "Medium (0.5 vCPU, 512 MB)"
    LARGE = "large", "Large (1 vCPU, 1 GB)"


class AllowedImage(models.Model):
    """A server the platform lets workspaces run: the allowlist is the gate.

    ``required_env_vars`` is ``[{key, label, type: text|password, help, required}]``: the
    credentials form, and what the bridge names when the server dies before its handshake.
    """

    class Egress(models.TextChoices):
        NONE = "none", "None"
        OPEN = "open", "Open"

    slug = models.SlugField(max_length=30, unique=True, validators=[image_slug_validator])
    name = models.CharField(max_length=100)
    image = models.CharField(max_length=300, help_text="Image reference, pinned by digest or local image id.")
    mcp_command = models.CharField(max_length=500, help_text="The stdio server's command (MCP_COMMAND).")
    required_env_vars = models.JSONField(default=list, blank=True)
    default_profile = models.CharField(max_length=10, choices=Profile.choices, default=Profile.SMALL)
    expected_tools = models.JSONField(default=list, blank=True)
    verified = models.BooleanField(default=False)
    egress = models.CharField(max_length=10, choices=Egress.choices, default=Egress.NONE)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def env_keys(self) -> list[str]:
        return [var["key"] for var in self.required_env_vars]

    @property
    def required_keys(self) -> list[str]:
        return [var["key"] for var in self.required_env_vars if var.get("required", True)]


class InstanceQuerySet(models.QuerySet):
    def counting_against_plan(self) -> InstanceQuerySet:
        return self.filter(status__in=Instance.ACTIVE)


class Instance(models.Model):
    """One hosted server of a workspace: a long operation as a row (the tasks advance it).

    pending → starting → running | failed → stopping → stopped.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"

    ACTIVE = (Status.PENDING, Status.STARTING, Status.RUNNING)

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="instances")
    image = models.ForeignKey(AllowedImage, on_delete=models.PROTECT, related_name="instances")
    profile = models.CharField(max_length=10, choices=Profile.choices, default=Profile.SMALL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    healthy = models.BooleanField(default=False)
    runtime_id = models.CharField(max_length=100, blank=True, help_text="Process id or container id.")
    host_port = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    env_encrypted = models.TextField(blank=True, editable=False)
    upstream_server = models.ForeignKey(
        "gateway.UpstreamServer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["workspace", "-created_at"]
        indexes = [models.Index(fields=["workspace", "status"])]

    def __str__(self) -> str:
        return f"{self.workspace.slug}/{self.image.slug}#{self.pk}"

    @property
    def server_slug(self) -> str:
        """Its upstream's slug in the workspace's gateway (namespaced by instance)."""
        return f"h-{self.image.slug[:25]}-{self.pk}"

    @property
    def env_names(self) -> list[str]:
        return sorted(self.get_env())

    def get_env(self) -> dict[str, str]:
        if not self.env_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.env_encrypted))

    def set_env(self, env: dict[str, str]) -> None:
        self.env_encrypted = crypto.encrypt(json.dumps(env)) if env else ""
