"""Writes for the marketplace, one module per concern:

- ``indexing``: the official registry and the awesome list into the catalogue;
- ``scores``: each server's quality score with its reasons.
"""

from apps.marketplace.services.indexing import (
    AwesomeEntry,
    AwesomeMerge,
    SourceError,
    awesome_entries,
    awesome_merge,
    registry_index,
    repository_key,
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
]
