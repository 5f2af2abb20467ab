"""Writes for the marketplace's curation: installs counted from the copy buttons, trending,
and staff verification of publishers.

Who counts as a *verified* publisher, decided in two places only:

* at indexing (``services.indexing``): a publisher the official registry lists gets
  ``NAMESPACE``, because the registry lets a namespace publish only with proof of it —
  GitHub sign-in for ``io.github.<owner>``, a DNS or HTTP challenge for a reverse-DNS
  namespace. A server known only from the awesome list proves nothing: its publisher is
  created unverified;
* here, by staff: ``publisher_verify`` grants ``STAFF``, ``publisher_unverify`` withdraws
  either; ``verified_at``/``verified_by`` record the last staff ruling, and a publisher
  staff ruled on is not re-verified by indexing.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections import defaultdict

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core.errors import Forbidden, RuleViolation
from apps.marketplace.models import Install, Publisher, Server

# A visitor may ask to count this many installs an hour (every copy button press is one
# ask, counted or not: a duplicate costs a database write too).
INSTALLS_PER_HOUR = 60
# The cache key of a visitor's count for an hour (its hash, never the address).
RATE_KEY = "marketplace:installs:{visitor}:{hour}"
# Trending: installs of the last TRENDING_DAYS, each weighed 0.5 ** (age in days / HALF_LIFE).
TRENDING_DAYS = 28
HALF_LIFE_DAYS = 7
WEEK_DAYS = 7


class InstallRateLimited(RuleViolation):
    """Too many installs asked for by one visitor this hour."""


def visitor_hash(visitor_key: str) -> str:
    """A keyed hash of ``user:<pk>`` or an IP address: stable for a day's deduplication,
    useless to anybody without SECRET_KEY (an IPv4 address alone is cheap to brute-force)."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"marketplace-install:{visitor_key}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def _over_limit(visitor: str, now: datetime.datetime) -> bool:
    """A fixed hourly window in the shared cache (Redis in production, so every web process
    counts together; per process in development)."""
    key = RATE_KEY.format(visitor=visitor, hour=f"{now:%Y%m%d%H}")
    cache.add(key, 0, timeout=3600)
    try:
        asked = cache.incr(key)
    except ValueError:  # expired between add and incr: this is its first ask
        cache.set(key, 1, timeout=3600)
        asked = 1
    return asked > INSTALLS_PER_HOUR


def install_record(*, server: Server, via: str, visitor_key: str, day: datetime.date | None = None) -> bool:
    """Count one install of ``server`` (a copy button pressed, "Add to workspace") by a
    visitor (``user:<pk>`` or an IP address; only its keyed hash is stored).

    Once per server, visitor and day: answers whether this one counted (False for a second
    press the same day). Raises ``InstallRateLimited`` past ``INSTALLS_PER_HOUR`` asks.
    """
    if via not in Install.Via.values:
        raise RuleViolation(f"Unknown install channel {via!r}.")
    now = timezone.now()
    visitor = visitor_hash(visitor_key)
    if _over_limit(visitor, now):
        raise InstallRateLimited(f"More than {INSTALLS_PER_HOUR} installs in an hour: try again later.")
    try:
        # A savepoint, so that a caller's transaction survives the conflict.
        with transaction.atomic():
            Install.objects.create(
                server=server, via=via, visitor=visitor, day=day or timezone.localdate(now), created_at=now
            )
    except IntegrityError:
        return False  # already counted today (the unique constraint decides, races included)
    return True


def trending_refresh(*, now: datetime.datetime | None = None) -> int:
    """Recompute every server's ``installs_week`` and ``trending``; the number of servers
    whose values changed (only those are written).

    ``installs_week`` is the installs of the last 7 days, today included. ``trending`` is
    an exponentially decayed sum over the last 28 days with a half-life of a week: an
    install ``a`` days old weighs ``0.5 ** (a / 7)`` (today 1, a week ago 0.5, two weeks
    ago 0.25…), so a server climbs with this week's installs and fades without them.
    """
    today = timezone.localdate(now or timezone.now())
    start = today - datetime.timedelta(days=TRENDING_DAYS - 1)
    week_start = today - datetime.timedelta(days=WEEK_DAYS - 1)
    week: dict[int, int] = defaultdict(int)
    decayed: dict[int, float] = defaultdict(float)
    rows = (
        Install.objects.filter(day__gte=start, day__lte=today)
        .values_list("server_id", "day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for server_id, day, n in rows:
        decayed[server_id] += n * 0.5 ** ((today - day).days / HALF_LIFE_DAYS)
        if day >= week_start:
            week[server_id] += n
    # Servers with installs now, and those whose old values must fall back to zero.
    candidates = Server.objects.filter(Q(pk__in=list(decayed)) | Q(installs_week__gt=0) | Q(trending__gt=0)).only(
        "pk", "installs_week", "trending"
    )
    changed = []
    for server in candidates:
        installs_week, trending = week.get(server.pk, 0), round(decayed.get(server.pk, 0.0), 4)
        if server.installs_week != installs_week or abs(server.trending - trending) > 1e-9:
            server.installs_week, server.trending = installs_week, trending
            changed.append(server)
    Server.objects.bulk_update(changed, ["installs_week", "trending"], batch_size=500)
    return len(changed)


def _require_staff(actor: User) -> None:
    if not (actor.is_active and actor.is_staff):
        raise Forbidden("Only staff verify publishers.")


def publisher_verify(*, publisher: Publisher, actor: User) -> bool:
    """Staff vouch for a publisher (they checked who is behind the namespace by other
    means). A namespace the registry already proved stays so: that is the stronger claim.
    Answers whether anything changed."""
    _require_staff(actor)
    with transaction.atomic():
        publisher = Publisher.objects.select_for_update().get(pk=publisher.pk)
        if publisher.verified:
            return False
        publisher.verification = Publisher.Verification.STAFF
        publisher.verified_at, publisher.verified_by = timezone.now(), actor
        publisher.save(update_fields=["verification", "verified_at", "verified_by"])
        audit_event_record(
            workspace=None,
            actor=actor,
            action=Action.PUBLISHER_VERIFIED,
            target_type="publisher",
            target_id=publisher.pk,
            target_repr=publisher.namespace,
            metadata={"verification": publisher.verification},
        )
    return True


def publisher_unverify(*, publisher: Publisher, actor: User) -> bool:
    """Staff withdraw a publisher's badge, whichever way it was earned (a namespace taken
    over, a publisher misbehaving). ``verified_at`` and ``verified_by`` then record this
    decision, so that indexing, which grants NAMESPACE only to a publisher staff never
    ruled on (``verified_at`` empty), does not undo it. Answers whether anything changed."""
    _require_staff(actor)
    with transaction.atomic():
        publisher = Publisher.objects.select_for_update().get(pk=publisher.pk)
        if not publisher.verified:
            return False
        before = publisher.verification
        publisher.verification = Publisher.Verification.NONE
        publisher.verified_at, publisher.verified_by = timezone.now(), actor
        publisher.save(update_fields=["verification", "verified_at", "verified_by"])
        audit_event_record(
            workspace=None,
            actor=actor,
            action=Action.PUBLISHER_UNVERIFIED,
            target_type="publisher",
            target_id=publisher.pk,
            target_repr=publisher.namespace,
            metadata={"verification": [before, ""]},
        )
    return True
