"""Writes for the marketplace, one module per concern:

- ``indexing``: the official registry and the awesome list into the catalogue, and what
  search reads of each server;
- ``scores``: each server's quality score with its reasons;
- ``github``: stars, commits, licences and READMEs from GitHub;
- ``curation``: installs and trending, publisher verification;
- ``publishing``: server.json submissions and their review.
"""

from apps.marketplace.services.indexing import (
    AwesomeEntry,
    AwesomeMerge,
    SourceError,
    awesome_entries,
    awesome_merge,
    registry_index,
    repository_key,
    search_vectors_refresh,
    versions_write,
)
from apps.marketplace.services.scores import scores_refresh

__all__ = [
    "AwesomeEntry",
    "AwesomeMerge",
    "SourceError",
    "awesome_entries",
    "awesome_merge",
    "registry_index",
    "repository_key",
    "scores_refresh",
    "search_vectors_refresh",
    "versions_write",
]
