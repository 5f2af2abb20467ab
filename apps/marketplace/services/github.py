"""Writes for the marketplace: servers enriched from GitHub (``apps.marketplace.github``).

``github_enrich`` makes sure every repository a server names has a ``Repository`` row, takes
those due (``next_fetch_at`` passed) or the ones asked for, and fetches each from GitHub
*outside* any transaction; then writes each repository in a short transaction of its own
(its row, the README rendered and sanitised, and a copy of stars, last commit, archived,
licence and topics onto every server with that ``repository_key``), and finally scores the
servers that changed again.

Which source wins: the awesome list (``services.indexing.awesome_merge``) also sets stars,
last commit and archived, from a snapshot that is days or months old. GitHub, when it has
answered, is newer, so an enrichment always copies the repository's values onto its servers,
even when GitHub said "not modified": a list merged since then is overwritten again.

Rate limits: a run stops at the first "rate limited" answer and postpones everything due to
the moment GitHub gave (``X-RateLimit-Reset`` or ``Retry-After``), so the next runs do not
knock on a closed door. A repository GitHub does not know is marked missing and asked again
in a week; any other failure is recorded (a short reason, never the token) and retried after
a back-off that doubles each time, from an hour to a week. A token GitHub refuses stops the
run (``EnrichRun.error``) without marking any repository.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.marketplace import readme
from apps.marketplace.github import (
    DEFAULT_API_URL,
    Fetched,
    GitHubClient,
    GitHubError,
    NotFound,
    RateLimited,
    Unauthorized,
)
from apps.marketplace.models import Repository, Server
from apps.marketplace.services.indexing import search_vectors_refresh
from apps.marketplace.services.scores import scores_refresh

logger = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(days=1)
RETRY_MISSING_AFTER = timedelta(days=7)
RETRY_FAILED_FIRST = timedelta(hours=1)
RETRY_FAILED_MAX = timedelta(days=7)
KEY = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9._-]+$")
COPIED = ("stars", "last_commit_at", "archived", "license", "topics")


@dataclass
class EnrichRun:
    """What one run did, by repository (``servers``: servers whose data or README changed)."""

    due: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0
    failed: int = 0
    postponed: int = 0  # left for after the rate limit resets
    servers: int = 0
    requests: int = 0
    rate_limited_until: datetime | None = None
    error: str = ""  # why the run stopped early, other than the rate limit


def _api() -> tuple[str, str]:
    return settings.MCPNEST_GITHUB_API_URL or DEFAULT_API_URL, settings.MCPNEST_GITHUB_TOKEN.strip()


def repositories_ensure(*, keys: Iterable[str] | None = None) -> int:
    """A ``Repository`` row (pending, due now) for every repository a server names, and for
    ``keys``; the number created."""
    wanted = set(Server.objects.exclude(repository_key="").values_list("repository_key", flat=True).distinct())
    wanted |= set(keys or ())
    missing = wanted - set(Repository.objects.filter(key__in=wanted).values_list("key", flat=True))
    Repository.objects.bulk_create([Repository(key=key) for key in sorted(missing)], ignore_conflicts=True)
    return len(missing)


def _backoff(repository: Repository) -> timedelta:
    if repository.status == Repository.Status.FAILED and repository.fetched_at:
        previous = repository.next_fetch_at - repository.fetched_at
        return min(max(previous * 2, RETRY_FAILED_FIRST), RETRY_FAILED_MAX)
    return RETRY_FAILED_FIRST


def _apply(repository: Repository, fetched: Fetched) -> None:
    """Set the row from what GitHub said (a part it said was not modified stays as it is)."""
    info = fetched.info
    if info is not None:
        repository.stars = info.stargazers_count
        repository.archived = info.archived
        repository.license = info.spdx_id[:100]
        repository.topics = [str(topic)[:50] for topic in info.topics[:30]]
        repository.etag = fetched.info_etag
    if fetched.commits_changed:
        # An empty repository has no commit; its last push is the best we know then.
        pushed_at = info.pushed_at if info else repository.last_commit_at
        repository.last_commit_at = fetched.last_commit_at or pushed_at
        repository.commits_etag = fetched.commits_etag
    if fetched.readme_changed:
        repository.readme = fetched.readme
        base_url = fetched.readme_base_url or f"https://github.com/{repository.key}/blob/HEAD/"
        repository.readme_html = readme.render(fetched.readme, base_url=base_url)
        repository.readme_etag = fetched.readme_etag


def _write(repository: Repository, fetched: Fetched, now: datetime) -> tuple[bool, list[int]]:
    """Write one fetched repository and copy it onto its servers: whether anything of it
    changed, and the servers to score again."""
    before = [getattr(repository, field) for field in (*COPIED, "readme")]
    _apply(repository, fetched)
    readme_changed = repository.readme != before[-1]
    repository.status, repository.error = Repository.Status.OK, ""
    repository.fetched_at, repository.next_fetch_at = now, now + REFRESH_EVERY
    with transaction.atomic():
        repository.save()
        servers = list(Server.objects.filter(repository_key=repository.key).only("pk", *COPIED))
        stale = [s for s in servers if any(getattr(s, f) != getattr(repository, f) for f in COPIED)]
        for server in stale:
            for field in COPIED:
                setattr(server, field, getattr(repository, field))
        Server.objects.bulk_update(stale, list(COPIED))
    rescore = [s.pk for s in servers] if readme_changed else [s.pk for s in stale]
    return [getattr(repository, field) for field in (*COPIED, "readme")] != before, rescore


def _fail(repository: Repository, *, status: str, error: str, retry_after: timedelta, now: datetime) -> None:
    Repository.objects.filter(pk=repository.pk).update(
        status=status, error=error[:500], fetched_at=now, next_fetch_at=now + retry_after
    )


def github_enrich(*, keys: Iterable[str] | None = None, limit: int = 500, now: datetime | None = None) -> EnrichRun:
    """Fetch the repositories due (or ``keys``, ``owner/repo``, due or not; at most
    ``limit``) from GitHub and write what changed; see the module docstring."""
    now = now or timezone.now()
    asked = None
    if keys is not None:
        asked = sorted({key.strip().lower() for key in keys})
        bad = [key for key in asked if not KEY.match(key)]
        if bad:
            raise ValueError(f"not owner/repo: {', '.join(bad[:5])}")
    repositories_ensure(keys=asked)
    picked = (
        Repository.objects.filter(key__in=asked)
        if asked is not None
        else Repository.objects.filter(next_fetch_at__lte=now)
    )
    batch = list(picked.defer("readme_html").order_by("next_fetch_at", "pk")[:limit])
    run = EnrichRun(due=len(batch))
    rescore: set[int] = set()
    base_url, token = _api()
    with GitHubClient(base_url, token=token) as client:
        for position, repository in enumerate(batch):
            try:
                fetched = client.fetch(
                    repository.key,
                    etag=repository.etag,
                    commits_etag=repository.commits_etag,
                    readme_etag=repository.readme_etag,
                )
            except RateLimited as exc:
                run.rate_limited_until = exc.until
                rest = [r.pk for r in batch[position:]]
                run.postponed = Repository.objects.filter(Q(pk__in=rest) | Q(next_fetch_at__lte=now)).update(
                    next_fetch_at=exc.until
                )
                logger.warning("GitHub rate limit: %s; postponed %d repositories to %s", exc, run.postponed, exc.until)
                break
            except Unauthorized as exc:
                # A bad or expired token fails every repository alike: stop, and blame the
                # configuration rather than the repositories.
                run.error = f"GitHub refused the token: {exc}"
                logger.error("GitHub enrichment stopped: %s", run.error)
                break
            except NotFound:
                run.missing += 1
                _fail(
                    repository,
                    status=Repository.Status.MISSING,
                    error="Not found on GitHub.",
                    retry_after=RETRY_MISSING_AFTER,
                    now=now,
                )
                continue
            except GitHubError as exc:
                run.failed += 1
                logger.warning("GitHub %s: %s", repository.key, exc)
                _fail(
                    repository,
                    status=Repository.Status.FAILED,
                    error=str(exc),
                    retry_after=_backoff(repository),
                    now=now,
                )
                continue
            changed, servers = _write(repository, fetched, now)
            run.changed += changed
            run.unchanged += not changed
            rescore.update(servers)
        run.requests = client.requests
    if rescore:
        scores_refresh(server_ids=rescore, now=now)
        search_vectors_refresh(server_ids=rescore)  # the README is part of what search reads
    run.servers = len(rescore)
    logger.info(
        "GitHub enrichment: %d due, %d changed, %d unchanged, %d missing, %d failed, %d postponed, %d servers",
        run.due,
        run.changed,
        run.unchanged,
        run.missing,
        run.failed,
        run.postponed,
        run.servers,
    )
    return run
