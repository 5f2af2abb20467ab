"""Reads for the marketplace: one server's page, the home page's sections (server of the
week, trending, collections), collections and publishers (search is ``apps.marketplace.search``).

Every read here runs a fixed number of queries whatever the number of rows (the page tests
count them)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from apps.marketplace.configs import InstallConfigs, Launch, NoLaunch, install_configs, launches
from apps.marketplace.models import (
    Collection,
    CollectionItem,
    FeaturedServer,
    Publisher,
    Repository,
    Server,
    ServerVersion,
)


def server_named(name: str) -> Server | None:
    return Server.objects.listed().select_related("publisher").filter(name=name).first()


def published_collections() -> QuerySet[Collection]:
    return Collection.objects.filter(published=True)


@dataclass(frozen=True)
class ServerPage:
    """A listed server with what its page, its API and "Add to workspace" show of it."""

    server: Server
    versions: list[ServerVersion]  # the latest first
    document: dict  # the latest server.json
    configs: InstallConfigs | None  # None: nothing a client can install
    no_launch: str  # why not, then
    remote: Launch | None  # its first hosted endpoint
    readme_html: str = ""  # from its GitHub repository, sanitised when stored (apps.marketplace.readme)
    collections: tuple[Collection, ...] = ()  # the published ones it is in

    @classmethod
    def of(cls, name: str, *, versions: int = 100) -> ServerPage | None:
        server = server_named(name)
        if server is None:
            return None
        found = list(server.versions.order_by("-is_latest", "-published_at")[:versions])
        document = found[0].document if found else {}
        try:
            configs, no_launch = install_configs(document), ""
        except NoLaunch as exc:
            configs, no_launch = None, str(exc)
        remote = next((launch for launch in launches(document) if launch.remote), None)
        readme_html = ""
        if server.repository_key:
            readme_html = (
                Repository.objects.filter(key=server.repository_key.lower())
                .values_list("readme_html", flat=True)
                .first()
                or ""
            )
        collections = tuple(published_collections().filter(items__server=server).distinct())
        return cls(server, found, document, configs, no_launch, remote, readme_html, collections)


def trending(limit: int = 10) -> list[Server]:
    """Listed servers with installs lately, the most trending first (``services.curation.trending_refresh``)."""
    return list(
        Server.objects.listed().select_related("publisher").filter(trending__gt=0).order_by("-trending", "name")[:limit]
    )


def week_of(day: datetime.date) -> datetime.date:
    """That week's Monday."""
    return day - datetime.timedelta(days=day.weekday())


def featured(now: datetime.datetime | None = None) -> FeaturedServer | None:
    """This week's server of the week, if staff scheduled one and it is still listed."""
    week = week_of(timezone.localdate(now or timezone.now()))
    return (
        FeaturedServer.objects.select_related("server__publisher")
        .filter(week=week, server__in=Server.objects.listed())
        .first()
    )


def _listed_items() -> Prefetch:
    return Prefetch(
        "items",
        queryset=CollectionItem.objects.filter(server__in=Server.objects.listed()).select_related("server__publisher"),
        to_attr="listed_items",
    )


def collections_published() -> list[Collection]:
    """Published collections and starter packs, each with ``listed_items`` (its listed servers)."""
    return list(published_collections().prefetch_related(_listed_items()))


def collection_page(slug: str) -> Collection | None:
    """A published collection with ``listed_items``; None when missing or unpublished."""
    return published_collections().filter(slug=slug).prefetch_related(_listed_items()).first()


@dataclass(frozen=True)
class PublisherPage:
    publisher: Publisher
    servers: list[Server]  # listed ones, the best first

    @property
    def verification_reason(self) -> str:
        """Why the badge, in words ("" when unverified)."""
        publisher = self.publisher
        if publisher.verification == Publisher.Verification.NAMESPACE:
            if publisher.namespace.startswith("io.github."):
                return "Namespace proven to the official MCP registry by signing in to GitHub as its owner."
            return "Namespace proven to the official MCP registry by a DNS or HTTP challenge on its domain."
        if publisher.verification == Publisher.Verification.STAFF:
            when = f" on {publisher.verified_at:%Y-%m-%d}" if publisher.verified_at else ""
            return f"Verified by MCPNest staff{when}."
        return ""


def publisher_page(namespace: str) -> PublisherPage | None:
    """A publisher with its listed servers; None when unknown or with nothing listed."""
    publisher = Publisher.objects.filter(namespace=namespace).first()
    if publisher is None:
        return None
    servers = list(publisher.servers.listed().order_by("-score", "name"))
    if not servers:
        return None
    for server in servers:
        server.publisher = publisher  # the page shows its badge: no query per server
    return PublisherPage(publisher, servers)


def publishers() -> QuerySet[Publisher]:
    """Publishers with at least one listed server (the API's list)."""
    listed = Q(servers__status=Server.Status.ACTIVE, servers__hidden=False)
    return Publisher.objects.annotate(listed=Count("servers", filter=listed)).filter(listed__gt=0).order_by("namespace")
