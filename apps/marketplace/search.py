"""Reads for the marketplace: search, its filters and their counts.

The filters are words in ``Server.facets`` (``transport:stdio``, ``package:npm``,
``client:cursor``, ``category:databases``, ``remote``; written by
``services.indexing``), so one ``contains`` serves every database.

On PostgreSQL the words searched are matched against the stored ``Server.search_vector``
(name and title A, description B, tools C, README D; a GIN index) and, to forgive typos,
against the name after its namespace by trigram word similarity (a trigram GIN index);
the indexes, with partial ones for the sorts, are migration 0005's. Elsewhere (the embedded
SQLite default) each word must appear in the name, title, description, tools or README.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.contrib.postgres.lookups import TrigramWordSimilar
from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.db import connection
from django.db.models import CharField, Count, F, Func, Q, QuerySet, Value
from django.utils.text import slugify

from apps.marketplace.configs import CLIENTS
from apps.marketplace.models import Repository, Server

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
MAX_WORDS = 10
# The awesome list's sections (``services.indexing.awesome_entries``), as the filter offers them.
CATEGORIES = (
    "Aerospace & Astrodynamics",
    "Aggregators",
    "Architecture & Design",
    "Art & Culture",
    "Biology, Medicine and Bioinformatics",
    "Browser Automation",
    "Cloud Platforms",
    "Code Execution",
    "Coding Agents",
    "Command Line",
    "Communication",
    "Conversational AI",
    "Customer Data Platforms",
    "Data Platforms",
    "Data Science Tools",
    "Data Visualization",
    "Databases",
    "Delivery",
    "Developer Tools",
    "E-Commerce",
    "Education",
    "Embedded System",
    "end to end RAG platforms",
    "Environment & Nature",
    "File Systems",
    "Finance & Fintech",
    "Gaming",
    "Home Automation",
    "Knowledge & Memory",
    "Legal",
    "Location Services",
    "Marketing",
    "Monitoring",
    "Multimedia Process",
    "OS Automation",
    "Other Tools and Integrations",
    "Product Management",
    "Real Estate",
    "Research",
    "Search & Data Extraction",
    "Security",
    "Social Media",
    "Speech-to-Text",
    "Sports",
    "Support & Service Management",
    "Text-to-Speech",
    "Translation Services",
    "Travel & Transportation",
    "Version Control",
    "Workplace & Productivity",
)
# The same slug as ``services.indexing.category_slug`` (slugify, then at most 60 characters).
CATEGORY_SLUGS = {slugify(name)[:60]: name for name in CATEGORIES}
# The name after its namespace, as migration 0005 indexes it (its trigram GIN index): the
# namespace's words ("github" of "io.github.…") are in most names.
SHORT_NAME = Func(F("name"), Value("/"), Value(2), function="split_part", output_field=CharField())
WORD_SIMILARITY = "0.45"  # how close a word of the query must be to part of a name (0 to 1)
TEXT_CONFIG = "english"  # as the stored vectors are built (services.indexing.SEARCH_VECTOR_SQL)


@dataclass(frozen=True)
class Search:
    """A search as the page asks it; anything unknown falls back to the default."""

    q: str = ""
    transport: str = ""
    package: str = ""
    remote: bool = False
    category: str = ""  # a slug of CATEGORY_SLUGS (the category's name is accepted too)
    client: str = ""  # one of configs.CLIENTS: servers that client can install
    sort: str = "relevance"

    @classmethod
    def from_params(cls, params) -> Search:
        sort = params.get("sort", "relevance")
        category = slugify(str(params.get("category", ""))[:100])[:60]
        return cls(
            q=" ".join(str(params.get("q", "")).split())[:MAX_QUERY],
            transport=params.get("transport", "") if params.get("transport") in TRANSPORTS else "",
            package=params.get("package", "") if params.get("package") in PACKAGE_TYPES else "",
            remote=params.get("remote") == "1",
            category=category if category in CATEGORY_SLUGS else "",
            client=params.get("client", "") if params.get("client") in CLIENTS else "",
            sort=sort if sort in SORTS else "relevance",
        )


def _filtered(query: Search) -> QuerySet[Server]:
    """Listed servers that pass the facet filters (not the words)."""
    servers = Server.objects.listed()
    for facet in ("transport", "package", "client", "category"):
        if value := getattr(query, facet):
            servers = servers.filter(facets__contains=f" {facet}:{value} ")
    if query.remote:
        servers = servers.filter(remote=True)
    return servers


def _word_similarity_threshold() -> None:
    """%> compares with the session's threshold, 0.6 by default, which misses a common typo
    ("wether" scores 0.5 against "…/weather-forecast"). Set before each search rather than
    once per connection: a transaction rolled back (a failed request, a test) reverts it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pg_trgm.word_similarity_threshold', %s, false)", [WORD_SIMILARITY])


def _matching(servers: QuerySet[Server], q: str) -> QuerySet[Server]:
    """``servers`` that match the words ``q``; on PostgreSQL, annotated with ``rank`` and
    ``similarity`` for ordering by relevance (the caller sets ``_word_similarity_threshold``)."""
    if connection.vendor == "postgresql":
        words = SearchQuery(q, search_type="websearch", config=TEXT_CONFIG)
        # Both conditions are index lookups (@@ on the GIN of search_vector, %> on the
        # trigram GIN of the short name), so PostgreSQL can OR two bitmap scans rather than read
        # every row. The name's trigrams forgive a typo the dictionary cannot.
        # (The lookup as an expression: django.contrib.postgres is not an installed app.)
        return servers.filter(Q(search_vector=words) | TrigramWordSimilar(SHORT_NAME, q)).annotate(
            rank=SearchRank(F("search_vector"), words), similarity=TrigramWordSimilarity(q, SHORT_NAME)
        )
    for word in q.split()[:MAX_WORDS]:
        readme = Repository.objects.filter(readme__icontains=word).values("key")
        servers = servers.filter(
            Q(name__icontains=word)
            | Q(title__icontains=word)
            | Q(description__icontains=word)
            | Q(tools__icontains=word)
            | Q(repository_key__in=readme)
        )
    return servers


def search(query: Search) -> QuerySet[Server]:
    """Listed servers matching ``query``, in its order: by relevance (PostgreSQL: the
    full-text rank, then the name's similarity; elsewhere by name), or by score, trending,
    stars, newest or name. Without words, "relevance" is the score."""
    servers = _filtered(query).select_related("publisher")
    if query.q:
        if connection.vendor == "postgresql":
            _word_similarity_threshold()
        servers = _matching(servers, query.q)
        relevance = ["-rank", "-similarity", "name"] if connection.vendor == "postgresql" else ["name"]
    else:
        relevance = ["-score", "name"]
    order = SORTS[query.sort]
    if order == "-stars":
        return servers.order_by(F("stars").desc(nulls_last=True), "name")
    return servers.order_by(*([order, "name"] if order else relevance))


FACET_GROUPS = {
    "transport": TRANSPORTS,
    "package": PACKAGE_TYPES,
    "client": CLIENTS,
    "category": tuple(CATEGORY_SLUGS),
}


def _all_word_counts(servers: QuerySet[Server]) -> dict[str, int]:
    """Every facet word over ``servers`` with its count, in one pass (PostgreSQL): each row's
    words unnested and grouped, rather than a LIKE per value per row (~70 patterns a row)."""
    sql, params = servers.order_by().values("facets").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT word, count(*) FROM ("  # noqa: S608 - the inner SQL is Django's, with its params
            + sql
            + ") AS m, unnest(string_to_array(trim(m.facets), ' ')) AS word GROUP BY word",
            params,
        )
        return dict(cursor.fetchall())


def facet_counts(query: Search) -> dict[str, int]:
    """How many servers each transport, package type, client and category would leave, the
    other choices kept (``transport:sse`` → n), so the filters can say what they hold. One
    query per group at most; on PostgreSQL one per distinct set of other choices (so one in
    all when no filter is chosen)."""
    counts: dict[str, int] = {}
    if query.q and connection.vendor == "postgresql":
        _word_similarity_threshold()
    by_others: dict[Search, dict[str, tuple[str, ...]]] = {}
    for facet, values in FACET_GROUPS.items():
        others = replace(query, **{facet: ""}, sort="name")
        by_others.setdefault(others, {})[facet] = values
    for others, groups in by_others.items():
        servers = _filtered(others)
        if others.q:
            servers = _matching(servers, others.q)
        if connection.vendor == "postgresql":
            found = _all_word_counts(servers)
            for facet, values in groups.items():
                counts.update({f"{facet}:{value}": found.get(f"{facet}:{value}", 0) for value in values})
            continue
        for facet, values in groups.items():
            words = {f"{facet}:{value}": Q(facets__contains=f" {facet}:{value} ") for value in values}
            counts.update(servers.order_by().aggregate(**{word: Count("pk", filter=q) for word, q in words.items()}))
    return counts
