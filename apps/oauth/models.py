"""A connection: an OAuth client acting for one member in one workspace.

django-oauth-toolkit owns the clients (``Application``) and the tokens; a connection is
what people see and revoke in the portal. The consent page writes it; every token the
client holds for that member is bound to the workspace's gateway URL (RFC 8707), so
deleting the connection revokes exactly those tokens.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Connection(models.Model):
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="connections"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_connections")
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="oauth_connections")
    scope = models.CharField(max_length=200, default="mcp")
    created_at = models.DateTimeField(default=timezone.now)
    consented_at = models.DateTimeField(default=timezone.now, help_text="The member's latest consent.")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-consented_at"]
        constraints = [
            models.UniqueConstraint(fields=["application", "user", "workspace"], name="oauth_connection_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.application.name or self.application.client_id} for {self.user} in {self.workspace}"
