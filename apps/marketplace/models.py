"""The marketplace's catalogue: MCP servers indexed from the official registry (and, later,
GitHub and the awesome list), their versions, their publishers, and each indexing run.

A ``Server`` row is its latest version, denormalised for listing and facets; each
``ServerVersion`` keeps the registry's server.json as published (in the current shape,
whichever generation it came in: ``apps.marketplace.registry``).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
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
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
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
        SUBMITTED = "submitted", "Submitted to MCPNest"

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
    license = models.CharField(max_length=100, blank=True, help_text="SPDX id, from GitHub.")
    topics = models.JSONField(default=list, blank=True)
    # Tool names and descriptions, where known (a hosted catalog pin, a live tools/list).
    tools = models.JSONField(default=list, blank=True)
    # Installs (copy buttons, Add to workspace) in the last 7 days, and the decayed sum
    # that sorts "trending"; both refreshed by a task.
    installs_week = models.PositiveIntegerField(default=0)
    trending = models.FloatField(default=0, db_index=True)
    # Name, title, description, tools and README, weighted; kept by the index on PostgreSQL
    # (a GIN index serves search), unused elsewhere.
    search_vector = SearchVectorField(null=True, editable=False)
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


class Repository(models.Model):
    """A GitHub repository, as GitHub last told us about it (``apps.marketplace.github``).

    One row per ``owner/repo`` whatever number of servers share it (monorepos); the ETags
    make a refresh of an unchanged repository cost GitHub nothing of our rate limit.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Not fetched yet"
        OK = "ok", "Fetched"
        MISSING = "missing", "Not found on GitHub"
        FAILED = "failed", "Failed"

    key = models.CharField(max_length=200, unique=True, help_text="owner/repo, lower case.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    stars = models.PositiveIntegerField(null=True, blank=True)
    last_commit_at = models.DateTimeField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    license = models.CharField(max_length=100, blank=True)
    topics = models.JSONField(default=list, blank=True)
    readme = models.TextField(blank=True, help_text="Markdown, as published.")
    readme_html = models.TextField(blank=True, help_text="Rendered and sanitised.")
    etag = models.CharField(max_length=200, blank=True)
    commits_etag = models.CharField(max_length=200, blank=True)
    readme_etag = models.CharField(max_length=200, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(default=timezone.now, db_index=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return self.key


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


class Install(models.Model):
    """Somebody copied a config or added the server to a workspace: one row per server,
    visitor and day, so that reloading a page does not count twice. ``visitor`` is a keyed
    hash of the user or the IP address, never the address itself."""

    class Via(models.TextChoices):
        CLAUDE_DESKTOP = "claude-desktop", "Claude Desktop"
        CLAUDE_CODE = "claude-code", "Claude Code"
        CURSOR = "cursor", "Cursor"
        VSCODE = "vscode", "VS Code"
        WINDSURF = "windsurf", "Windsurf"
        WORKSPACE = "workspace", "Add to workspace"

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="installs")
    via = models.CharField(max_length=20, choices=Via.choices)
    visitor = models.CharField(max_length=64)
    day = models.DateField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "visitor", "day"], name="marketplace_install_once_a_day")
        ]
        indexes = [models.Index(fields=["day", "server"])]

    def __str__(self) -> str:
        return f"{self.server.name} via {self.via} on {self.day}"


class Collection(models.Model):
    """Servers picked by staff: a themed collection, or a starter pack to adopt together."""

    class Kind(models.TextChoices):
        COLLECTION = "collection", "Collection"
        STARTER_PACK = "starter-pack", "Starter pack"

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.COLLECTION)
    position = models.PositiveSmallIntegerField(default=0, help_text="Lower comes first.")
    published = models.BooleanField(default=False)
    servers = models.ManyToManyField(Server, through="CollectionItem", related_name="collections")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "title"]

    def __str__(self) -> str:
        return self.title


class CollectionItem(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="items")
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True, help_text="Why it is here.")

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["collection", "server"], name="marketplace_collection_item")]

    def __str__(self) -> str:
        return f"{self.collection} / {self.server}"


class FeaturedServer(models.Model):
    """The server of the week, scheduled ahead by staff: ``week`` is that week's Monday."""

    week = models.DateField(unique=True, help_text="The Monday of the week it is featured.")
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+")
    blurb = models.TextField(blank=True)

    class Meta:
        ordering = ["-week"]
        verbose_name = "server of the week"
        verbose_name_plural = "servers of the week"

    def __str__(self) -> str:
        return f"{self.week}: {self.server}"

    def clean(self) -> None:
        if self.week and self.week.weekday() != 0:
            raise ValidationError({"week": "Pick the Monday of the week."})


class Submission(models.Model):
    """A server.json a signed-in user submitted, waiting for staff review before it is
    listed (``apps.marketplace.services.publishing``). Only a document that validated
    against the official schema is stored."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved and listed"
        REJECTED = "rejected", "Rejected"

    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)
    document = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="mcp_submissions"
    )
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True, help_text="Shown to the submitter when rejected.")
    server = models.ForeignKey(Server, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"])]
        constraints = [
            # Two identical submissions sent at the same moment: one waits for review.
            models.UniqueConstraint(
                fields=["name", "version"],
                condition=models.Q(status="pending"),
                name="marketplace_submission_one_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.version} ({self.get_status_display()})"
