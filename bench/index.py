"""Indexing benchmark: 10,000 registry entries, then the same again unchanged.

    .venv/bin/python bench/index.py [--entries 10000]

The entries are the real 2025-12-18 snapshot's (tests/marketplace/data/), every shape and
quirk of it, renamed (``…-copyN``) until there are ``--entries``, served by a local
registry that pages like the official one (100 a page, ``nextCursor``). Timed: a full
index into an empty PostgreSQL database (``mcpnest_bench_index``, dropped and created
here), then a second full run over the same, unchanged entries (it must write nothing).

Targets (the issue): the first <= 60 s, the second <= 15 s. Printed with PASS or MISS.

NOTES (2 cores, 2026-11-30, PostgreSQL 15, with a test suite running beside it): the first
index 17.1 s (101 pages of 100: one transaction each, ~8 queries a page whatever its size:
publishers, servers and versions upserted in bulk, then the touched servers set from their
latest versions); again, unchanged, 2.0 s (0 versions written: a page's existing versions
are read in one query and compared before anything is written). 4,107 servers, 10,000
versions. PASS both. With each touched server scored again after its page (the quality
score, from its latest server.json): 20.4 s and 1.8 s, quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_DB = "mcpnest_bench_index"


def _entries(count: int) -> list[dict]:
    from bench._shared import copies
    from tests.marketplace.registry_server import SNAPSHOT, entries

    return copies(entries(SNAPSHOT), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()

    from bench._shared import django_on_postgres

    django_on_postgres(PG_DB)

    from apps.marketplace.models import Server, ServerVersion
    from apps.marketplace.services import registry_index
    from tests.marketplace.registry_server import Registry

    entries = _entries(args.entries)
    print(f"MCPNest indexing benchmark: {len(entries)} entries (the 2025-12-18 snapshot's, renamed), PostgreSQL")
    with Registry(entries) as registry:
        started = time.perf_counter()
        first = registry_index(url=registry.url, full=True)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        again = registry_index(url=registry.url, full=True)
        warm = time.perf_counter() - started
    assert first.status == again.status == "done", (first.error, again.error)
    print(
        f"first index: {cold:.1f} s, {first.pages} pages, {first.written} versions written, "
        f"{Server.objects.count()} servers, {ServerVersion.objects.count()} versions"
    )
    print(f"again, unchanged: {warm:.1f} s, {again.written} versions written")
    print(f"index {len(entries)} entries: {cold:.1f} s (target <= 60 s)  {'PASS' if cold <= 60 else 'MISS'}")
    print(f"re-index unchanged: {warm:.1f} s (target <= 15 s)  {'PASS' if warm <= 15 else 'MISS'}")


if __name__ == "__main__":
    main()
