"""Writes for the marketplace: indexing the registry and the awesome list.

``registry_index`` walks a source page by page (the registry's API, or a file of entries in
any of its shapes) and writes each page in one short transaction: publishers, servers and
versions upserted in bulk (a few queries a page, whatever its size), then each touched
server set from its latest version. After each page the run records the cursor of the next
one, so an interrupted run resumes where it stopped (``resume=True``) and a repeated page
writes nothing new: indexing is idempotent.

An entry that cannot be indexed is reported on the run (``IndexRun.problems``) and skipped;
the run goes on. A source that fails (the registry down, a page that is not JSON) fails the
run with the reason, keeping its cursor. No network call happens inside a transaction.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.marketplace.configs import CLIENTS, NoLaunch, install_configs
from apps.marketplace.models import IndexRun, Publisher, Server, ServerVersion
from apps.marketplace.registry import BadEntry, Entry, RegistryClient, RegistryError, items_of, parse
from apps.marketplace.services.scores import scores_refresh

logger = logging.getLogger(__name__)

FILE_PAGE = 500  # entries per transaction when indexing a file
MAX_PROBLEMS = 200


class SourceError(Exception):
    """The source could not be read; the run is failed with this reason."""


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _url(value: Any) -> str:
    return value[:500] if isinstance(value, str) and value.startswith(("https://", "http://")) else ""


# Each client's config in configs.InstallConfigs: a client can install a server when the
# config code gives it something (the same code the server page shows, so no second rule).
CLIENT_CONFIGS = {
    "claude-desktop": "claude_desktop",
    "claude-code": "claude_code_command",
    "cursor": "cursor",
    "vscode": "vscode",
    "windsurf": "windsurf",
}
if set(CLIENT_CONFIGS) != set(CLIENTS):  # a client added to configs must be added here too
    raise ImportError(f"CLIENT_CONFIGS does not name each of configs.CLIENTS: {CLIENTS}")
FACETS_LENGTH = Server._meta.get_field("facets").max_length


def clients_of(document: dict[str, Any]) -> list[str]:
    """The clients (``configs.CLIENTS``) that can install the server: those its configs serve."""
    try:
        configs = install_configs(document)
    except NoLaunch:
        return []
    return [client for client in CLIENTS if getattr(configs, CLIENT_CONFIGS[client])]


def category_slug(category: str) -> str:
    """``"Search & Data Extraction"`` → ``"search-data-extraction"``: a facet word."""
    return slugify(category)[:60]


def facet_words(words: list[str]) -> str:
    """`` word word `` as ``Server.facets`` keeps them: whole words only, as many as fit (a
    word cut short would match nothing, but could hide the words after it)."""
    kept, length = [], 1
    for word in dict.fromkeys(words):
        if length + len(word) + 1 > FACETS_LENGTH:
            logger.info("facets full: %s left out", word)
            continue
        kept.append(word)
        length += len(word) + 1
    return f" {' '.join(kept)} " if kept else ""


def with_categories(facets: str, categories: list[str]) -> str:
    """``facets`` with its ``category:`` words replaced by those of ``categories``."""
    words = [word for word in facets.split() if not word.startswith("category:")]
    return facet_words(words + [f"category:{category_slug(c)}" for c in categories if category_slug(c)])


def _facets(document: dict[str, Any]) -> dict[str, Any]:
    packages = [p for p in document.get("packages") or [] if isinstance(p, dict)]
    remotes = [r for r in document.get("remotes") or [] if isinstance(r, dict)]
    transports = {str((p.get("transport") or {}).get("type") or "stdio") for p in packages}
    transports |= {str(r.get("type")) for r in remotes if r.get("type")}
    repository = document.get("repository") if isinstance(document.get("repository"), dict) else {}
    package_types = sorted({str(p.get("registryType")) for p in packages if p.get("registryType")})
    words = [f"transport:{t}" for t in sorted(transports)] + [f"package:{t}" for t in package_types]
    words += ["remote"] if remotes else []
    words += [f"client:{client}" for client in clients_of(document)]
    repository_url = _url(repository.get("url"))
    return {
        "repository_key": repository_key(repository_url),
        "facets": facet_words(words),
        "title": _text(document.get("title"), 200),
        "description": _text(document.get("description"), 10_000),
        "repository_url": repository_url,
        "website_url": _url(document.get("websiteUrl")),
        "transports": sorted(transports),
        "package_types": package_types,
        "remote": bool(remotes),
    }


# Weights: A the name and title, B the description, C the tools, D the README (its first
# 20,000 characters: they say what the server is about, and ranking reads every matching
# vector, so a long one costs every search it matches). Of
# the name, the part after the namespace, its punctuation as spaces ("io.github.acme/
# weather-mcp" → "weather mcp"): the namespace's words ("io", "github") are in most names
# and would make a search for them match, and rank, nearly every server; the trigram
# search on the whole name still finds a publisher's servers.
SEARCH_VECTOR_SQL = """
UPDATE marketplace_server AS s SET search_vector =
    setweight(to_tsvector('english',
        regexp_replace(split_part(s.name, '/', 2), '[^A-Za-z0-9]+', ' ', 'g') || ' ' || s.title), 'A')
    || setweight(to_tsvector('english', s.description), 'B')
    || setweight(to_tsvector('english', coalesce((
        SELECT string_agg(CASE jsonb_typeof(tool)
            WHEN 'object' THEN concat_ws(' ', tool->>'name', tool->>'description')
            WHEN 'string' THEN tool #>> '{}' ELSE '' END, ' ')
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(s.tools) = 'array' THEN s.tools ELSE '[]' END) AS tool
    ), '')), 'C')
    || setweight(to_tsvector('english', coalesce((
        SELECT left(r.readme, 20000) FROM marketplace_repository AS r
        WHERE r.key = s.repository_key AND s.repository_key <> ''
    ), '')), 'D')
WHERE s.id = ANY(%s)
"""


def search_vectors_refresh(*, server_ids: Iterable[int] | None) -> int:
    """Compute the stored search vector (name/title, description, tools, README) of these
    servers (all when None); call it after any of those change, a README included. On
    PostgreSQL only: other databases search the columns themselves. The number updated."""
    if connection.vendor != "postgresql":
        return 0
    ids = list(Server.objects.values_list("pk", flat=True)) if server_ids is None else list(server_ids)
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(ids), 2000):
            cursor.execute(SEARCH_VECTOR_SQL, [ids[start : start + 2000]])
            updated += cursor.rowcount
    return updated


def versions_write(entries: list[Entry], *, namespace_proven: bool = True) -> int:
    """Upsert one page of entries; the number of versions written (new or changed).

    ``namespace_proven``: the entries come from the official registry, which lets a
    namespace publish only with proof of it; a submission to MCPNest proves nothing."""
    if not entries:
        return 0
    now = timezone.now()
    # The same version twice in a page: the last one wins, as it would across pages.
    by_key = {(entry.name, entry.version): entry for entry in entries}
    with transaction.atomic():
        namespaces = {entry.namespace for entry in by_key.values()}
        proof = Publisher.Verification.NAMESPACE if namespace_proven else Publisher.Verification.NONE
        Publisher.objects.bulk_create(
            [Publisher(namespace=ns, verification=proof) for ns in namespaces], ignore_conflicts=True
        )
        if namespace_proven:
            # A publisher first met on the awesome list or a submission (unverified) is proven
            # once the registry lists its namespace; a staff ruling (verified_at set) stands.
            Publisher.objects.filter(
                namespace__in=namespaces, verification=Publisher.Verification.NONE, verified_at__isnull=True
            ).update(verification=Publisher.Verification.NAMESPACE)
        publisher_ids = dict(Publisher.objects.filter(namespace__in=namespaces).values_list("namespace", "pk"))
        names = {entry.name for entry in by_key.values()}
        Server.objects.bulk_create(
            [Server(name=name, publisher_id=publisher_ids[name.split("/", 1)[0]]) for name in names],
            ignore_conflicts=True,
        )
        server_ids = dict(Server.objects.filter(name__in=names).values_list("name", "pk"))
        existing = {
            (server_id, version): (status, is_latest, updated_at)
            for server_id, version, status, is_latest, updated_at in ServerVersion.objects.filter(
                server_id__in=server_ids.values()
            ).values_list("server_id", "version", "status", "is_latest", "updated_at")
        }
        fresh = []
        for entry in by_key.values():
            server_id = server_ids[entry.name]
            before = existing.get((server_id, entry.version))
            if before == (entry.status, bool(entry.is_latest), entry.updated_at):
                continue  # unchanged: re-indexing writes nothing
            fresh.append(
                ServerVersion(
                    server_id=server_id,
                    version=entry.version,
                    status=entry.status,
                    is_latest=bool(entry.is_latest),
                    published_at=entry.published_at,
                    updated_at=entry.updated_at,
                    document=entry.server,
                )
            )
        if fresh:
            ServerVersion.objects.bulk_create(
                fresh,
                update_conflicts=True,
                unique_fields=["server", "version"],
                update_fields=["status", "is_latest", "published_at", "updated_at", "document"],
            )
            _refresh({version.server_id for version in fresh}, now)
    return len(fresh)


def _refresh(server_ids: set[int], now: datetime) -> None:
    """Set each server from its latest version: the one the registry flags, else the newest."""
    latest: dict[int, ServerVersion] = {}
    versions = ServerVersion.objects.filter(server_id__in=server_ids).order_by(
        "server_id", "-is_latest", "-published_at", "-pk"
    )
    for version in versions.only(
        "server_id", "version", "status", "is_latest", "published_at", "updated_at", "document"
    ):
        latest.setdefault(version.server_id, version)
    categories = dict(Server.objects.filter(pk__in=list(latest)).values_list("pk", "categories"))
    servers = []
    for server_id, version in latest.items():
        server = Server(pk=server_id, version=version.version, status=version.status, indexed_at=now)
        server.published_at, server.updated_at = version.published_at, version.updated_at
        for field, value in _facets(version.document).items():
            setattr(server, field, value)
        server.facets = with_categories(server.facets, categories.get(server_id) or [])
        servers.append(server)
    Server.objects.bulk_update(
        servers,
        [
            "version",
            "status",
            "indexed_at",
            "published_at",
            "updated_at",
            "title",
            "description",
            "repository_url",
            "website_url",
            "transports",
            "package_types",
            "remote",
            "facets",
            "repository_key",
        ],
        batch_size=500,
    )
    _absorb_listed_only([server.repository_key for server in servers if server.repository_key])
    search_vectors_refresh(server_ids=set(latest))
    scores_refresh(server_ids=set(latest), documents={pk: version.document for pk, version in latest.items()}, now=now)


GITHUB_REPOSITORY = re.compile(r"^https?://(?:www\.)?github\.com/([^/\s]+)/([^/\s#?]+?)(?:\.git)?/?$", re.IGNORECASE)


def repository_key(url: str) -> str:
    """``https://github.com/Owner/Repo.git`` → ``owner/repo`` (how the two sources meet)."""
    match = GITHUB_REPOSITORY.match(url or "")
    return f"{match.group(1)}/{match.group(2)}".lower()[:200] if match else ""


# --- the awesome list -------------------------------------------------------------------

SKIPPED_SECTIONS = {"What is MCP?", "Clients", "Frameworks", "Tips and Tricks", "Star History"}


@dataclass(frozen=True)
class AwesomeEntry:
    key: str  # owner/repo, lower case
    owner: str
    repo: str
    description: str
    stars: int | None
    last_commit_at: datetime | None
    archived: bool


def _category(title: str) -> str:
    """``"🗄️ Databases"`` → ``"Databases"``."""
    return re.sub(r"^[^\w(]+", "", title or "").strip()[:80]


def awesome_entries(document: Any) -> tuple[list[AwesomeEntry], dict[str, list[str]]]:
    """Every server of the awesome list (the enhansome JSON of punkpeye/awesome-mcp-servers),
    and each one's categories (its sections): a repository listed twice is one entry, in both."""
    found: dict[str, AwesomeEntry] = {}
    categories: dict[str, list[str]] = {}

    def walk(node: Any, category: str) -> None:
        if not isinstance(node, dict):
            return
        info = node.get("repo_info")
        if isinstance(info, dict) and info.get("owner") and info.get("repo"):
            key = f"{info['owner']}/{info['repo']}".lower()[:200]
            categories.setdefault(key, [])
            if category and category not in categories[key]:
                categories[key].append(category)
            if key not in found:
                stars = info.get("stars")
                try:
                    last = datetime.fromisoformat(str(info.get("last_commit")).replace("Z", "+00:00"))
                except ValueError:
                    last = None
                found[key] = AwesomeEntry(
                    key=key,
                    owner=str(info["owner"])[:100],
                    repo=str(info["repo"])[:100],
                    description=_text(node.get("description"), 10_000),
                    stars=stars if isinstance(stars, int) and stars >= 0 else None,
                    last_commit_at=last,
                    archived=info.get("archived") is True,
                )
        for child in (node.get("items") or []) + (node.get("children") or []):
            walk(child, category)

    for section in items_of(document.get("items") if isinstance(document, dict) else document):
        title = section.get("title", "") if isinstance(section, dict) else ""
        if title not in SKIPPED_SECTIONS:
            walk(section, _category(title))
    return list(found.values()), categories


def _awesome_name(entry: AwesomeEntry) -> str:
    """The registry's name for a GitHub repository: ``io.github.<owner>/<repo>``."""
    return f"io.github.{entry.owner.lower()}/{entry.repo}"[:200]


@dataclass(frozen=True)
class AwesomeMerge:
    entries: int
    matched: int  # registry servers enriched
    added: int  # servers only the list knows


def awesome_merge(*, path: Path) -> AwesomeMerge:
    """Merge the awesome list into the index without duplicates: a repository a registry
    server names enriches it (stars, last commit, archived, categories); one the registry
    does not know becomes a server of its own (``io.github.<owner>/<repo>``, unverified)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        entries, categories = awesome_entries(json.loads(raw.decode("utf-8-sig")))
    except (OSError, ValueError, BadEntry) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    now = timezone.now()
    by_key = {entry.key: entry for entry in entries}
    with transaction.atomic():
        known: dict[str, list[Server]] = {}
        for server in Server.objects.filter(repository_key__in=list(by_key)).order_by("source", "pk"):
            known.setdefault(server.repository_key, []).append(server)
        # A registry server under the repository's own GitHub name, without (or with another)
        # repository URL: the same server still.
        named = {_awesome_name(entry): key for key, entry in by_key.items() if key not in known}
        for server in Server.objects.filter(name__in=list(named)):
            known.setdefault(named[server.name], []).append(server)
        enriched = []
        for key, servers in known.items():
            entry = by_key[key]
            for server in servers:
                server.stars, server.last_commit_at, server.archived = entry.stars, entry.last_commit_at, entry.archived
                server.categories = categories.get(key, [])
                server.facets = with_categories(server.facets, server.categories)
                enriched.append(server)
        Server.objects.bulk_update(
            enriched, ["stars", "last_commit_at", "archived", "categories", "facets"], batch_size=500
        )
        new = [entry for key, entry in by_key.items() if key not in known]
        namespaces = {f"io.github.{entry.owner.lower()}" for entry in new}
        Publisher.objects.bulk_create([Publisher(namespace=ns) for ns in namespaces], ignore_conflicts=True)
        publisher_ids = dict(Publisher.objects.filter(namespace__in=namespaces).values_list("namespace", "pk"))
        Server.objects.bulk_create(
            [
                Server(
                    name=_awesome_name(entry),
                    publisher_id=publisher_ids[f"io.github.{entry.owner.lower()}"],
                    source=Server.Source.AWESOME,
                    description=entry.description,
                    repository_url=f"https://github.com/{entry.owner}/{entry.repo}"[:500],
                    repository_key=entry.key,
                    stars=entry.stars,
                    last_commit_at=entry.last_commit_at,
                    archived=entry.archived,
                    categories=categories.get(entry.key, []),
                    facets=with_categories("", categories.get(entry.key, [])),
                    indexed_at=now,
                )
                for entry in new
            ],
        )
        touched = list(Server.objects.filter(repository_key__in=list(by_key)).values_list("pk", flat=True))
        search_vectors_refresh(server_ids=touched)
    scores_refresh(server_ids=touched)
    return AwesomeMerge(entries=len(entries), matched=len(enriched), added=len(new))


def _absorb_listed_only(keys: list[str]) -> None:
    """A repository the awesome list brought in alone, now in the registry too: one server,
    the registry's, with what the list knew of it."""
    for listed in Server.objects.filter(source=Server.Source.AWESOME, repository_key__in=keys):
        registered = list(Server.objects.filter(source=Server.Source.REGISTRY, repository_key=listed.repository_key))
        for server in registered:
            server.stars, server.last_commit_at, server.archived = listed.stars, listed.last_commit_at, listed.archived
            server.categories = listed.categories
            server.facets = with_categories(server.facets, listed.categories)
        Server.objects.bulk_update(registered, ["stars", "last_commit_at", "archived", "categories", "facets"])
        listed.delete()


def _file_pages(path: Path) -> Iterator[tuple[list[Any], str | None]]:
    """Pages of a file, each with the cursor of the next (the offset of its first entry)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        items = items_of(json.loads(raw.decode("utf-8-sig")))
    except (OSError, ValueError, BadEntry) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    for start in range(0, len(items), FILE_PAGE):
        yield items[start : start + FILE_PAGE], str(start + FILE_PAGE)


def _registry_pages(client: RegistryClient, cursor: str | None, since: datetime | None):
    try:
        for page, _ in client.pages(cursor=cursor, updated_since=since):
            yield page.items, page.next_cursor
    except RegistryError as exc:
        raise SourceError(str(exc)) from None


def _index(run: IndexRun, pages: Iterable[tuple[list[Any], str | None]], *, skip_to: int = 0) -> IndexRun:
    try:
        for number, (items, next_cursor) in enumerate(pages):
            if number < skip_to:
                continue
            entries = []
            for item in items:
                try:
                    entries.append(parse(item))
                except BadEntry as exc:
                    run.skipped += 1
                    if len(run.problems) < MAX_PROBLEMS:
                        name = item.get("name") if isinstance(item, dict) else None
                        run.problems.append({"name": str(name)[:200] if name else "", "reason": str(exc)[:500]})
            run.written += versions_write(entries)
            run.pages += 1
            run.seen += len(items)
            run.cursor = next_cursor or ""  # where a resumed run starts
            run.save(update_fields=["written", "pages", "seen", "skipped", "problems", "cursor"])
    except SourceError as exc:
        run.status, run.error, run.finished_at = IndexRun.Status.FAILED, str(exc), timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        logger.warning("registry index of %s failed: %s", run.source, exc)
        return run
    run.status, run.cursor, run.finished_at = IndexRun.Status.DONE, "", timezone.now()
    run.save(update_fields=["status", "cursor", "finished_at"])
    return run


def registry_index(
    *, url: str | None = None, file: Path | None = None, full: bool = False, resume: bool = True
) -> IndexRun:
    """Index the registry at ``url`` (its ``/v0.1/servers``) or a file of entries.

    From the registry: only entries updated since the last completed run of that source,
    unless ``full`` (or none completed yet); an unfinished run of the same source is resumed
    from its cursor when ``resume``. A file is read whole and written page by page.
    """
    source = str(file) if file else (url or "").rstrip("/")
    if not source:
        raise ValueError("registry_index needs a url or a file")
    unfinished = (
        IndexRun.objects.filter(source=source).exclude(status=IndexRun.Status.DONE).order_by("-started_at").first()
        if resume
        else None
    )
    if unfinished is not None and unfinished.cursor:
        run = unfinished
        run.status, run.error = IndexRun.Status.RUNNING, ""
        run.save(update_fields=["status", "error"])
    else:
        last = IndexRun.objects.filter(source=source, status=IndexRun.Status.DONE).order_by("-started_at").first()
        since = None if full or file or last is None else last.started_at
        run = IndexRun.objects.create(source=source, full=full or since is None, updated_since=since)
    if file:
        skip = int(run.cursor) // FILE_PAGE if run.cursor.isdigit() else 0
        return _index(run, _file_pages(Path(file)), skip_to=skip)
    client = RegistryClient(source)
    try:
        return _index(run, _registry_pages(client, run.cursor or None, run.updated_since))
    finally:
        client.close()
