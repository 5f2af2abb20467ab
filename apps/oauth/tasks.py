"""OAuth housekeeping for beat: expired tokens and grants are deleted (the toolkit's
``clear_expired``), then dynamically registered clients nobody uses."""

from __future__ import annotations

from celery import shared_task
from oauth2_provider.models import clear_expired

from apps.oauth import services


@shared_task(name="apps.oauth.tasks.prune_clients")
def prune_clients() -> int:
    clear_expired()
    return services.clients_prune()
