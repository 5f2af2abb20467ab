"""Hosted MCP servers: the catalog of images a workspace may run, and the instances it runs.

An instance's credentials (``env``) are encrypted at rest with MCPNEST_ENCRYPTION_KEYS and
never shown again: not in ``str()``, the admin, audit rows or logs (``services.mask``).
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.core import crypto

image_slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?$",
    "Use 1–30 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)


ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
ENV_VAR_FIELDS = {"key", "label", "type", "help", "required"}
# What the runtime sets itself; a credential must not replace them.
RESERVED_ENV = {"MCP_COMMAND", "MCP_REQUIRED_ENV", "BRIDGE_HOST", "BRIDGE_PORT", "PATH", "PYTHONPATH", "HOME"}


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
    # What the server needs to be useful: "open" for servers that call an outside API. Each
    # instance still starts without egress unless its deployer allows it (Instance.egress).
    egress = models.CharField(max_length=10, choices=Egress.choices, default=Egress.NONE)
    runtime_image = models.BooleanField(
        default=False,
        help_text="Runs in MCPNest's runtime image: build_runtime_image pins the image reference to each build.",
    )
    unavailable_reason = models.CharField(
        max_length=300, blank=True, help_text="When set, the server is listed but cannot be deployed, for this reason."
    )
    # How the marketplace finds its way here: a registry server.json whose package is this one
    # deploys from the Hosted tab, and the workspace's own registry lists it while it runs.
    registry_package = models.CharField(
        max_length=300,
        blank=True,
        db_index=True,
        help_text='The package it runs, as the MCP registry names it: "npm:@scope/name", "pypi:name".',
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        """``required_env_vars`` must be a list of ``{key, label, type, help, required}``: the
        keys become environment variables and form field names."""
        if not isinstance(self.required_env_vars, list):
            raise ValidationError({"required_env_vars": "A list of {key, label, type, help, required} objects."})
        seen = set()
        for n, var in enumerate(self.required_env_vars):
            where = f"Entry {n + 1}"
            if not isinstance(var, dict) or set(var) - ENV_VAR_FIELDS:
                raise ValidationError(
                    {"required_env_vars": f"{where}: an object with {', '.join(sorted(ENV_VAR_FIELDS))}."}
                )
            key = var.get("key")
            if not isinstance(key, str) or not ENV_VAR_NAME.match(key) or key in RESERVED_ENV:
                raise ValidationError(
                    {
                        "required_env_vars": f"{where}: key must be an environment variable name like API_KEY, "
                        f"not {key!r} (and not one the bridge sets: {', '.join(sorted(RESERVED_ENV))})."
                    }
                )
            if key in seen:
                raise ValidationError({"required_env_vars": f"{where}: {key} is listed twice."})
            seen.add(key)
            if var.get("type", "text") not in ("text", "password"):
                raise ValidationError({"required_env_vars": f"{where}: type is text or password."})
            for text in ("label", "help"):
                if not isinstance(var.get(text, ""), str):
                    raise ValidationError({"required_env_vars": f"{where}: {text} is text."})
            if not isinstance(var.get("required", True), bool):
                raise ValidationError({"required_env_vars": f"{where}: required is true or false."})

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

    pending → starting → running | failed → stopping → stopped; a Member's request starts
    as requested and becomes pending when an Owner or Admin approves it (or rejected).
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        REJECTED = "rejected", "Rejected"
        PENDING = "pending", "Pending"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"

    ACTIVE = (Status.PENDING, Status.STARTING, Status.RUNNING)
    # Nothing more will happen to it (the console closes).
    SETTLED = (Status.REJECTED, Status.FAILED, Status.STOPPED)

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="instances")
    image = models.ForeignKey(AllowedImage, on_delete=models.PROTECT, related_name="instances")
    profile = models.CharField(max_length=10, choices=Profile.choices, default=Profile.SMALL)
    egress = models.CharField(
        max_length=10,
        choices=AllowedImage.Egress.choices,
        default=AllowedImage.Egress.NONE,
        help_text="Whether its container may reach the network beyond its workspace (an Owner's or Admin's choice).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    healthy = models.BooleanField(default=False)
    runtime_id = models.CharField(max_length=100, blank=True, help_text="Process id or container id.")
    host_port = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
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
    def tool_prefix(self) -> str:
        """Its tools' prefix in the gateway (``memory-7_read_graph``): stable whatever else
        the workspace runs, so allowlists and pins keep naming the same tools."""
        return f"{self.image.slug[:25]}-{self.pk}_"

    @property
    def env_names(self) -> list[str]:
        try:
            return sorted(self.get_env())
        except crypto.DecryptionError:  # a key taken out of MCPNEST_ENCRYPTION_KEYS: names unknown
            return ["(unreadable with the current keys)"]

    def get_env(self) -> dict[str, str]:
        if not self.env_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.env_encrypted))

    def set_env(self, env: dict[str, str]) -> None:
        self.env_encrypted = crypto.encrypt(json.dumps(env)) if env else ""
