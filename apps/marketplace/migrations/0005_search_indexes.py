"""Search at scale: on PostgreSQL, a GIN index on the stored search vector and trigram GIN
indexes on the name and the facet words (``apps.marketplace.search``); on every database, the facet words for
clients and categories, and (PostgreSQL) the search vectors, filled in for existing rows.

The indexes live in the database only, not in the model's state: other databases have no
GIN, and ``makemigrations`` has nothing to say about them.
"""

from django.db import migrations

SORTS = (
    ("score", "score DESC"),
    ("trending", "trending DESC"),
    ("stars", "stars DESC NULLS LAST"),
    ("newest", "updated_at DESC"),
)
INDEXES = (
    "CREATE INDEX IF NOT EXISTS marketplace_server_search_gin ON marketplace_server USING gin (search_vector)",
    # The name after its namespace ("weather-mcp" of "io.github.acme/weather-mcp"): the
    # namespace's "github" would otherwise be "similar" to nearly every name.
    "CREATE INDEX IF NOT EXISTS marketplace_server_name_trgm ON marketplace_server "
    "USING gin ((split_part(name, '/', 2)) gin_trgm_ops)",
    # LIKE '% category:databases %' from the index when few rows have the word.
    "CREATE INDEX IF NOT EXISTS marketplace_server_facets_trgm ON marketplace_server USING gin (facets gin_trgm_ops)",
    # The sorts, over listed servers: a page is the first rows of the index.
    *(
        f"CREATE INDEX IF NOT EXISTS marketplace_server_listed_{name} ON marketplace_server ({order}, name) "
        "WHERE status = 'active' AND NOT hidden"
        for name, order in SORTS
    ),
)
DROPS = (
    "DROP INDEX IF EXISTS marketplace_server_search_gin",
    "DROP INDEX IF EXISTS marketplace_server_name_trgm",
    "DROP INDEX IF EXISTS marketplace_server_facets_trgm",
    *(f"DROP INDEX IF EXISTS marketplace_server_listed_{name}" for name, _ in SORTS),
)


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in INDEXES:
            schema_editor.execute(sql)


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in DROPS:
            schema_editor.execute(sql)


def backfill(apps, schema_editor):
    """Facets as the index now writes them, from each server's latest version and its
    categories; then the search vectors. The helpers are pure (documents in, words out)."""
    from apps.marketplace.services.indexing import _facets, search_vectors_refresh, with_categories

    Server = apps.get_model("marketplace", "Server")
    ServerVersion = apps.get_model("marketplace", "ServerVersion")
    documents = {}
    latest = ServerVersion.objects.order_by("server_id", "-is_latest", "-published_at", "-pk")
    for server_id, document in latest.values_list("server_id", "document").iterator(chunk_size=1000):
        documents.setdefault(server_id, document)
    changed = []
    for server in Server.objects.only("pk", "facets", "categories").iterator(chunk_size=1000):
        words = _facets(documents[server.pk])["facets"] if server.pk in documents else ""
        facets = with_categories(words, server.categories or [])
        if facets != server.facets:
            server.facets = facets
            changed.append(server)
    Server.objects.bulk_update(changed, ["facets"], batch_size=500)
    if schema_editor.connection.vendor == "postgresql":
        search_vectors_refresh(server_ids=list(Server.objects.values_list("pk", flat=True)))


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0004_curation")]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes),
        # Going back leaves the extra words and vectors: the older code ignores them.
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
