"""What the gateway governs: upstream MCP servers, per-member allowlists and tool pins."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from apps.core import crypto

server_slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$",
    "Use 1–40 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)
# Tool names SHOULD be [A-Za-z0-9_.-]; a prefix must keep them so.
prefix_validator = RegexValidator(r"^[A-Za-z0-9_.-]{1,40}$", "Use up to 40 letters, digits, '_', '.' or '-'.")

# A queued or running check older than this is taken as lost (its worker died, or its message
# expired): it no longer shows as under way, may be asked for again, and beat marks it failed.
# Far longer than the task's own time limit (apps.gateway.tasks.server_check_run).
CHECK_STALE_AFTER = timedelta(minutes=10)


class UpstreamServer(models.Model):
    """An MCP server behind a workspace's gateway.

    Upstream credentials (``headers``) are encrypted at rest with MCPNEST_ENCRYPTION_KEYS and
    never shown again once saved; the URL carries none (``services.server_url_check``). Only
    approved, enabled servers are reached by the gateway, each call within the server's
    ``timeout_seconds`` and ``max_concurrency`` (empty: the gateway's defaults).

    Approving a server and checking it contact the upstream, which can take seconds: a
    request only records what was asked (``check_*``) and a task does it, outside any
    transaction (``services.server_check_run``).
    """

    class Transport(models.TextChoices):
        AUTO = "auto", "Detect"
        STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"
        SSE = "sse", "Legacy HTTP+SSE"

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested (waiting for approval)"
        APPROVED = "approved", "Approved"

    class CheckKind(models.TextChoices):
        APPROVE = "approve", "Approval"
        HEALTH = "health", "Health check"

    class CheckState(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="servers")
    slug = models.CharField(max_length=40, validators=[server_slug_validator])
    url = models.URLField(max_length=500)
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.AUTO)
    prefix = models.CharField(max_length=40, blank=True, validators=[prefix_validator])
    position = models.PositiveIntegerField(default=0)
    headers_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_ok = models.BooleanField(null=True, blank=True)
    health_detail = models.CharField(max_length=300, blank=True)
    # The last check asked for by a person (an approval, or "Check now"), as a small long-running
    # operation: the request records it queued, the task advances it (running, then done or
    # failed). One at a time per server. Its outcome for the upstream is in health_*;
    # check_error says why the check itself could not be carried out.
    check_kind = models.CharField(max_length=10, choices=CheckKind.choices, blank=True)
    check_state = models.CharField(max_length=10, choices=CheckState.choices, blank=True)
    check_requested_at = models.DateTimeField(null=True, blank=True)
    check_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    check_requested_ip = models.GenericIPAddressField(null=True, blank=True)
    check_started_at = models.DateTimeField(null=True, blank=True)
    check_finished_at = models.DateTimeField(null=True, blank=True)
    check_error = models.CharField(max_length=300, blank=True)
    # A requested server's tools as its last check listed them, for the Owner or Admin who
    # decides on the request (never used by the gateway: approval pins what is offered then).
    offered_tools = models.JSONField(null=True, blank=True, editable=False)
    timeout_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="How long a call may wait on this server, in seconds. Empty: MCPNEST_GATEWAY_UPSTREAM_TIMEOUT.",
    )
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text=(
            "Calls to this server in flight at once, per gateway process; more wait briefly, then are refused "
            "as busy. Empty: MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY."
        ),
    )

    class Meta:
        ordering = ["workspace", "position", "slug"]
        constraints = [models.UniqueConstraint(fields=["workspace", "slug"], name="server_unique_slug")]

    def __str__(self) -> str:
        return f"{self.workspace.slug}/{self.slug}"

    @property
    def is_live(self) -> bool:
        return self.enabled and self.status == self.Status.APPROVED

    @property
    def checking(self) -> bool:
        """A check (or an approval) was asked for and has not finished yet, nor been given up."""
        open_states = (self.CheckState.QUEUED, self.CheckState.RUNNING)
        return (
            self.check_state in open_states
            and self.check_requested_at is not None
            and self.check_requested_at > timezone.now() - CHECK_STALE_AFTER
        )

    @property
    def approving(self) -> bool:
        """An Owner or Admin approved this requested server; the task that pins its tools has not finished."""
        return self.checking and self.check_kind == self.CheckKind.APPROVE

    @property
    def header_names(self) -> list[str]:
        return sorted(self.get_headers())

    def get_headers(self) -> dict[str, str]:
        if not self.headers_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.headers_encrypted))

    def set_headers(self, headers: dict[str, str]) -> None:
        self.headers_encrypted = crypto.encrypt(json.dumps(headers)) if headers else ""


class AllowRule(models.Model):
    """One ``server:tool`` (or ``server:*``) a member may call when enforcement is on."""

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="allow_rules")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="allow_rules")
    server_slug = models.CharField(max_length=40)
    tool = models.CharField(max_length=200, help_text="A tool name, or * for every tool of the server.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["workspace", "user", "server_slug", "tool"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user", "server_slug", "tool"], name="allowrule_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.server_slug}:{self.tool}"


class ToolPin(models.Model):
    """The approved definition of one upstream tool (defence against "rug pulls").

    When the upstream later presents a different definition it is stored as pending and
    the tool is withheld until an Owner or Admin re-approves it. A tool never approved has
    an empty ``fingerprint``. A rejected pending definition stays in ``pending_*`` with
    ``rejected_at`` set: the tool stays withheld, and the same definition is not offered for
    approval again (the gateway reports only definitions that differ from both fingerprints).
    """

    class State(models.TextChoices):
        APPROVED = "approved", "Approved"
        PENDING_CHANGE = "pending_change", "Changed, waiting for approval"
        NEW = "new", "New, waiting for approval"
        REJECTED = "rejected", "Change rejected (withheld)"

    server = models.ForeignKey(UpstreamServer, on_delete=models.CASCADE, related_name="pins")
    tool_name = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    definition = models.JSONField()
    pending_fingerprint = models.CharField(max_length=64, blank=True)
    pending_definition = models.JSONField(null=True, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["server", "tool_name"]
        constraints = [models.UniqueConstraint(fields=["server", "tool_name"], name="toolpin_unique_tool")]

    def __str__(self) -> str:
        return f"{self.server.slug}:{self.tool_name}"

    @property
    def has_pending_change(self) -> bool:
        """A definition waits for an Owner or Admin (a rejected one no longer does)."""
        return bool(self.pending_fingerprint) and self.rejected_at is None

    @property
    def state(self) -> str:
        if self.pending_fingerprint and self.rejected_at is not None:
            return self.State.REJECTED
        if self.pending_fingerprint:
            return self.State.PENDING_CHANGE if self.fingerprint else self.State.NEW
        return self.State.APPROVED

    @property
    def shown_definition(self) -> dict:
        """The approved definition, or for a tool never approved the one it presents."""
        return self.definition if self.fingerprint else (self.pending_definition or {})
