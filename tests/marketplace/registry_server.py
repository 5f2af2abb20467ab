"""A local MCP registry for tests: serves a list of real registry entries at
``/v0.1/servers`` and pages it as the official registry does (``limit``, an opaque
``cursor``, ``metadata.nextCursor`` on every full page, the last one too, and
``updated_since`` on the entries' official ``updatedAt``). It can be told to fail a page,
to see a run stop and resume."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

from tests.local_http import LocalServer

OFFICIAL = "io.modelcontextprotocol.registry/official"
# Real registry files, gzipped copies of ../shared/data/registry/ (data/README.md says where
# each comes from), kept in the repository so that CI indexes them wherever it runs.
DATA = Path(__file__).resolve().parent / "data"
SNAPSHOT = DATA / "official-registry-servers-2025-12-18.json.gz"
LEGACY = DATA / "official-registry-servers-2025-09-30-legacy.json.gz"
SEED = DATA / "registry-seed-2025-05-16.json.gz"


def entries(path: Path) -> list:
    return json.loads(gzip.decompress(path.read_bytes()))


def _updated(item) -> datetime | None:
    meta = (item.get("_meta") or {}).get(OFFICIAL) or {} if isinstance(item, dict) else {}
    when = meta.get("updatedAt") or meta.get("publishedAt")
    return datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None


class Registry(LocalServer):
    def __init__(self, items: list, *, limit_cap: int = 100):
        self.items = items
        self.limit_cap = limit_cap
        self.requests: list[dict[str, str]] = []
        self.fail_pages: set[int] = set()  # request numbers (0-based) answered 500

    def page(self, query: dict[str, str]) -> tuple[int, dict]:
        number = len(self.requests)
        self.requests.append(query)
        if number in self.fail_pages:
            return 500, {"title": "Internal Server Error"}
        limit = min(int(query.get("limit", 30)), self.limit_cap)
        items = self.items
        if query.get("updated_since"):
            since = datetime.fromisoformat(query["updated_since"].replace("Z", "+00:00"))
            items = [i for i in items if (_updated(i) or since) > since]
        offset = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if query.get("cursor") else 0
        chunk = items[offset : offset + limit]
        metadata = {"count": len(chunk)}
        if len(chunk) == limit:  # a full page says there may be more, even when it was the last
            metadata["nextCursor"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        return 200, {"servers": chunk, "metadata": metadata}

    def respond(self, method, url, headers, body):
        if method != "GET" or url.path != "/v0.1/servers":
            return 404, {}, b""
        status, answer = self.page({k: v[0] for k, v in parse_qs(url.query).items()})
        return status, {"Content-Type": "application/json"}, json.dumps(answer).encode()
