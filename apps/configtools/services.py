"""Writes for the composer and the generator (and the two reads they share with the views).

``composition_save`` keeps servers and placeholder *names* behind a short share id: the
composer refuses any value that is not a placeholder, so a share link never carries a
secret. ``generation_run`` writes a scaffold, has it compiled and started (``generator.check``)
and keeps the result in its user's history only, checked or failed with the reason.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.configtools.composer import MAX_SERVERS, ComposedServer, CompositionError, compose, placeholder
from apps.configtools.generator import engine
from apps.configtools.models import Composition, Generation
from apps.core.errors import RuleViolation
from apps.marketplace.models import ServerVersion

log = logging.getLogger(__name__)

SHARE_ID_BYTES = 6  # 8 URL-safe characters: 2**48 ids, a collision is retried
MAX_TITLE = 120


@dataclass(frozen=True)
class ServerChoice:
    """What the composer was asked for: a marketplace server's registry name and the
    placeholders for (some of) its variables."""

    name: str
    variables: dict[str, str]


def composed_servers(choices: list[ServerChoice]) -> list[ComposedServer]:
    """Each chosen server with its latest listed server.json; ``CompositionError`` if one is
    not in the marketplace (never listed, hidden, or deleted)."""
    if len(choices) > MAX_SERVERS:
        raise CompositionError(f"At most {MAX_SERVERS} servers in one composition.")
    names = [choice.name for choice in choices]
    if len(set(names)) != len(names):
        raise CompositionError("Each server can be in a composition once.")
    latest = {
        version.server.name: version.document
        for version in ServerVersion.objects.filter(
            server__name__in=names,
            is_latest=True,
            server__status="active",
            server__hidden=False,
        ).select_related("server")
    }
    missing = [name for name in names if name not in latest]
    if missing:
        raise CompositionError(f"Not in the marketplace: {', '.join(missing)}.")
    return [ComposedServer(name=c.name, document=latest[c.name], variables=c.variables) for c in choices]


def composition_save(*, actor: User | None, servers: list[ServerChoice], title: str = "") -> Composition:
    """Keep the composition behind a new share id. Everything is checked first (servers
    listed, variables declared, values placeholders) by composing it: what is stored is
    exactly what composes."""
    if not servers:
        raise CompositionError("Pick at least one server.")
    composed = composed_servers(servers)
    compose(composed)  # raises CompositionError on an unknown variable or a value
    stored = [
        {
            "name": server.name,
            "variables": {name: placeholder(value, variable=name) for name, value in sorted(server.variables.items())},
        }
        for server in composed
    ]
    creator = actor if actor is not None and actor.is_authenticated else None
    for _ in range(5):
        try:
            with transaction.atomic():
                return Composition.objects.create(
                    share_id=secrets.token_urlsafe(SHARE_ID_BYTES),
                    title=" ".join(title.split())[:MAX_TITLE],
                    servers=stored,
                    created_by=creator,
                )
        except IntegrityError:  # the share id was taken: draw another
            continue
    raise RuleViolation("Could not find a free share id; try again.")


def composition_choices(composition: Composition) -> list[ServerChoice]:
    return [ServerChoice(name=item["name"], variables=dict(item["variables"])) for item in composition.servers]


# --- the generator -------------------------------------------------------------------------


class RateLimited(RuleViolation):
    """Too many generations in the window; the message says when to come back."""


def generation_quota(user: User) -> tuple[int, int]:
    """(runs in the last window, the limit): counted from the user's history, which every run
    writes to, so the limit survives restarts and needs no cache."""
    limit = settings.MCPNEST_GENERATOR_PER_HOUR
    since = timezone.now() - timedelta(hours=1)
    return Generation.objects.filter(user=user, created_at__gte=since).count(), limit


def generation_run(*, actor: User, prompt: str, language: str) -> Generation:
    """Generate a server from ``prompt`` in ``language``, check it, and keep it in the
    actor's history. The model path is used when an Anthropic key is configured, the template
    otherwise; either way nothing is shown as working unless the check passed."""
    prompt = prompt.strip()
    if not prompt:
        raise RuleViolation("Describe the server you want, in a sentence or two.")
    if len(prompt) > 500:
        raise RuleViolation("Keep the description to 500 characters.")
    if language not in Generation.Language.values:
        raise RuleViolation(f"Language must be one of {', '.join(Generation.Language.values)}.")
    # Serialised per user, so two requests at once cannot both pass the limit.
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=actor.pk).first()
        used, limit = generation_quota(actor)
        if used >= limit:
            raise RateLimited(f"You have generated {used} servers in the last hour (the limit is {limit}); try later.")
        # A row is written now, so the attempt counts even if the run fails outright.
        generation = Generation.objects.create(
            user=actor,
            prompt=prompt,
            language=language,
            engine=engine.engine_name(),
            status=Generation.Status.FAILED,
            # What it says if the run never finishes (the process died): overwritten below.
            check_output="Interrupted before its check finished.",
        )
    # No transaction here: the model call and the check take seconds.
    try:
        result = engine.generate(prompt=prompt, language=language)
    except Exception:
        generation.check_output = "The generator failed unexpectedly; nothing was checked."
        generation.save(update_fields=["check_output"])
        raise
    generation.engine = result.engine
    generation.status = Generation.Status.CHECKED if result.ok else Generation.Status.FAILED
    generation.name = result.scaffold.name[:100] if result.scaffold else ""
    generation.description = result.scaffold.description if result.scaffold else ""
    generation.code = result.scaffold.code if result.scaffold else ""
    generation.install = result.scaffold.install if result.scaffold else {}
    generation.tools = result.tools
    generation.check_output = result.message
    generation.save()
    log.info("generation %s by user %s: %s (%s)", generation.pk, actor.pk, generation.status, generation.engine)
    return generation
