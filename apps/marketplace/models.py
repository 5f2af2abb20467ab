"""The marketplace's catalogue: MCP servers indexed from the official registry (and, later,
GitHub and the awesome list), their versions, their publishers, and each indexing run.

A ``Server`` row is its latest version, denormalised for listing and facets; each
``ServerVersion`` keeps the registry's server.json as published (in the current shape,
whichever generation it came in: ``apps.marketplace.registry``).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Publisher(models.Model):
    """Whoever publishes under a registry namespace (``io.github.<owner>`` or a reverse DNS name)."""

    class Verification(models.TextChoices):
        NONE = "", "Not verified"
        # The official registry lets a namespace publish only with proof of it (GitHub sign-in
        # for io.github.<owner>, a DNS or HTTP challenge for a domain).
        NAMESPACE = "namespace", "Namespace proven to the registry"
        STAFF = "staff", "Verified by staff"

    namespace = models.CharField(max_length=200, unique=True)
    verification = models.CharField(max_length=10, choices=Verification.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["namespace"]

    def __str__(self) -> str:
        return self.namespace

    @property
    def verified(self) -> bool:
        return bool(self.verification)


class ServerQuerySet(models.QuerySet):
    def listed(self) -> ServerQuerySet:
        """What the marketplace shows: active in the registry, not hidden by staff."""
        return self.filter(status=Server.Status.ACTIVE, hidden=False)


class Server(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DEPRECATED = "deprecated", "Deprecated"
        DELETED = "deleted", "Deleted"

    class Source(models.TextChoices):
        REGISTRY = "registry", "Official MCP registry"
        AWESOME = "awesome", "awesome-mcp-servers list"

    name = models.CharField(max_length=200, unique=True)  # namespace/name, as in the registry
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="servers")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.REGISTRY)
    # From its latest version:
    version = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    repository_url = models.URLField(max_length=500, blank=True)
    website_url = models.URLField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    transports = models.JSONField(default=list, blank=True)  # stdio, streamable-http, sse
    package_types = models.JSONField(default=list, blank=True)  # npm, pypi, oci, nuget, mcpb
    remote = models.BooleanField(default=False, help_text="It has a hosted endpoint (remotes).")
    # " transport:stdio package:npm remote " — the facets as words, so that one indexed
    # ``contains`` filters on every database (SQLite has no JSON containment).
    facets = models.CharField(max_length=300, blank=True, editable=False)
    published_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True, help_text="In the registry.")
    indexed_at = models.DateTimeField(default=timezone.now)
    hidden = models.BooleanField(default=False, help_text="Hidden by staff, whatever the registry says.")
    # From GitHub (the awesome list's copy of it, for now), matched by repository:
    repository_key = models.CharField(max_length=200, blank=True, db_index=True, help_text="owner/repo on GitHub.")
    stars = models.PositiveIntegerField(null=True, blank=True)
    last_commit_at = models.DateTimeField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    categories = models.JSONField(default=list, blank=True)
    # The quality score (apps.marketplace.scoring), kept with its reasons.
    score = models.PositiveSmallIntegerField(default=0)
    grade = models.CharField(max_length=1, blank=True)
    score_reasons = models.JSONField(default=list, blank=True)

    objects = ServerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["status", "hidden"]), models.Index(fields=["-updated_at"])]

    def __str__(self) -> str:
        return self.name


class ServerVersion(models.Model):
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Server.Status.choices, default=Server.Status.ACTIVE)
    is_latest = models.BooleanField(default=False)
    published_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    document = models.JSONField(help_text="Its server.json (current shape).")

    class Meta:
        ordering = ["server", "-published_at"]
        constraints = [models.UniqueConstraint(fields=["server", "version"], name="marketplace_version_unique")]

    def __str__(self) -> str:
        return f"{self.server.name}@{self.version}"


class IndexRun(models.Model):
    """One pass over a source: where it got to (``cursor``, to resume), and what it found."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    source = models.CharField(max_length=500)
    full = models.BooleanField(default=False)
    updated_since = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    cursor = models.CharField(max_length=500, blank=True, help_text="The page to ask for next.")
    pages = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    written = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="Entries skipped, and why (the first 200).")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.source} {self.started_at:%Y-%m-%d %H:%M} {self.status}"
