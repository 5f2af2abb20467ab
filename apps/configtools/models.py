"""What the config tools keep: compositions behind share links, and each user's own
history of generated servers. The validator and the scanner store nothing."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Composition(models.Model):
    """Servers picked in the composer, with their variables as placeholders, behind a short
    share id. It never holds a secret value: only names and placeholders."""

    share_id = models.CharField(max_length=16, unique=True)
    title = models.CharField(max_length=120, blank=True)
    # [{"name": "<registry name>", "variables": {"NAME": "<placeholder>"}}]
    servers = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.share_id


class Generation(models.Model):
    """One run of the MCP generator, kept only in its user's history."""

    class Language(models.TextChoices):
        TYPESCRIPT = "typescript", "TypeScript"
        PYTHON = "python", "Python"

    class Status(models.TextChoices):
        CHECKED = "checked", "Compiled and listed its tools"
        FAILED = "failed", "Failed its check"

    class Engine(models.TextChoices):
        MODEL = "model", "Anthropic model"
        TEMPLATE = "template", "Template"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mcp_generations")
    prompt = models.CharField(max_length=500)
    language = models.CharField(max_length=12, choices=Language.choices)
    engine = models.CharField(max_length=10, choices=Engine.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    name = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    code = models.TextField(blank=True)
    install = models.JSONField(default=dict, blank=True)
    tools = models.JSONField(default=list, blank=True, help_text="What the check listed.")
    check_output = models.TextField(blank=True, help_text="The compiler's or the run's message when it failed.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name or self.prompt[:40]} ({self.get_language_display()})"
