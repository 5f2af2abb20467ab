"""Reads for the marketplace: search, its filters and their counts.

The filters are words in ``Server.facets`` (``transport:stdio``, ``package:npm``,
``client:cursor``, ``remote``), so one indexed ``contains`` serves every database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector, TrigramSimilarity
from django.db import connection
from django.db.models import Count, F, Q, QuerySet

from apps.marketplace.configs import CLIENTS
from apps.marketplace.models import Server

TRANSPORTS = ("stdio", "streamable-http", "sse")
PACKAGE_TYPES = ("npm", "pypi", "oci", "nuget", "mcpb")
SORTS = {
    "relevance": None,
    "score": "-score",
    "trending": "-trending",
    "stars": "-stars",
    "newest": "-updated_at",
    "name": "name",
}
MAX_QUERY = 200


@dataclass(frozen=True)
class Search:
    """A search as the page asks it; anything unknown falls back to the default."""

    q: str = ""
    transport: str = ""
    package: str = ""
    remote: bool = False
    category: str = ""  # one of the awesome list's categories, as stored in Server.categories
    client: str = ""  # one of configs.CLIENTS: servers that client can install
    sort: str = "relevance"

    @classmethod
    def from_params(cls, params) -> Search:
        sort = params.get("sort", "relevance")
        return cls(
            q=" ".join(str(params.get("q", "")).split())[:MAX_QUERY],
            transport=params.get("transport", "") if params.get("transport") in TRANSPORTS else "",
            package=params.get("package", "") if params.get("package") in PACKAGE_TYPES else "",
            remote=params.get("remote") == "1",
            category=str(params.get("category", ""))[:100],
            client=params.get("client", "") if params.get("client") in CLIENTS else "",
            sort=sort if sort in SORTS else "relevance",
        )


def search(query: Search) -> QuerySet[Server]:
    """Listed servers matching ``query``: PostgreSQL ranks full-text matches (name and title
    first, then the description) and forgives typos in the name (trigrams); other databases
    match every word as a substring of the name, title or description."""
    servers = Server.objects.listed().select_related("publisher")
    if query.transport:
        servers = servers.filter(facets__contains=f" transport:{query.transport} ")
    if query.package:
        servers = servers.filter(facets__contains=f" package:{query.package} ")
    if query.remote:
        servers = servers.filter(remote=True)
    if query.q and connection.vendor == "postgresql":
        vector = SearchVector("name", "title", weight="A") + SearchVector("description", weight="B")
        servers = servers.annotate(
            rank=SearchRank(vector, SearchQuery(query.q, search_type="websearch")),
            similarity=TrigramSimilarity("name", query.q),
        ).filter(Q(rank__gt=0) | Q(similarity__gt=0.3))
        relevance = ["-rank", "-similarity", "name"]
    elif query.q:
        for word in query.q.split()[:10]:
            servers = servers.filter(
                Q(name__icontains=word) | Q(title__icontains=word) | Q(description__icontains=word)
            )
        relevance = ["name"]
    else:
        relevance = ["-score", "name"]
    order = SORTS[query.sort]
    if order == "-stars":
        return servers.order_by(F("stars").desc(nulls_last=True), "name")
    return servers.order_by(*([order, "name"] if order else relevance))


def facet_counts(query: Search) -> dict[str, int]:
    """How many servers each transport and package type would leave, the other choices
    kept (``transport:sse`` → n): a query per group, so the filters can say what they hold."""
    counts = {}
    for facet, values in (("transport", TRANSPORTS), ("package", PACKAGE_TYPES)):
        others = replace(query, **{facet: ""}, sort="name")
        matching = search(others).order_by()
        counts.update(
            matching.aggregate(
                **{f"{facet}:{value}": Count("pk", filter=Q(facets__contains=f" {facet}:{value} ")) for value in values}
            )
        )
    return counts
