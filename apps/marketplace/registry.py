"""The official MCP registry's entries, in each of the shapes it has published, made one.

Three generations are read (``../shared/data/registry/README.md`` has real files of each):

* **current** (API ``v0.1``): ``{"server": {server.json}, "_meta": {"io.modelcontextprotocol.registry/official":
  {status, publishedAt, updatedAt, isLatest}}}``;
* **legacy flat** (API 2025-09-16): the server.json fields at the top level, with ``status``
  beside them and ``_meta`` holding the official metadata;
* **seed** (2025-05, snake_case): ``version_detail``, ``packages[].registry_name``/``name``,
  ``environment_variables``, ``remotes[].transport_type``.

Each is declared as a pydantic model (unknown fields are kept, missing ones have defaults) and
turned into one ``Entry`` whose ``server`` is a current-shape server.json. An item that
cannot be an entry (no name, a name that is not ``namespace/name``, no version) raises
``BadEntry`` with the reason, so the indexer reports and skips it. Django-free.

The registry client pages ``GET {base}/v0.1/servers?limit=&cursor=&updated_since=`` and
follows ``metadata.nextCursor`` until there is none (a full last page still has one; the
page after it is empty).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import httpx2
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

OFFICIAL = "io.modelcontextprotocol.registry/official"
# Reverse-DNS namespace, a slash, a name (the registry's own rule, a little looser).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
STATUSES = {"active", "deprecated", "deleted"}
PAGE_LIMIT = 100


class BadEntry(ValueError):
    """This item cannot be indexed; the message says why."""


# A date the registry left blank ("") is no date.
When = Annotated[datetime | None, BeforeValidator(lambda value: None if value == "" else value)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OfficialMeta(_Lenient):
    status: str | None = None
    published_at: When = Field(None, alias="publishedAt")
    updated_at: When = Field(None, alias="updatedAt")
    is_latest: bool | None = Field(None, alias="isLatest")


class CurrentItem(_Lenient):
    server: dict[str, Any]
    meta: dict[str, Any] = Field(default_factory=dict, alias="_meta")


class SeedPackage(_Lenient):
    registry_name: str = ""
    name: str = ""
    version: str | None = None
    environment_variables: list[dict[str, Any]] = Field(default_factory=list)
    package_arguments: list[dict[str, Any]] = Field(default_factory=list)


class SeedRemote(_Lenient):
    transport_type: str = ""
    url: str = ""


class SeedVersion(_Lenient):
    version: str = ""
    release_date: When = None
    is_latest: bool | None = None


class SeedItem(_Lenient):
    name: str = ""
    description: str = ""
    repository: dict[str, Any] = Field(default_factory=dict)
    version_detail: SeedVersion
    packages: list[SeedPackage] = Field(default_factory=list)
    remotes: list[SeedRemote] = Field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    server: dict[str, Any]  # a current-shape server.json
    status: str  # active | deprecated | deleted
    published_at: datetime | None
    updated_at: datetime | None
    is_latest: bool | None  # None: the source did not say

    @property
    def namespace(self) -> str:
        return self.name.split("/", 1)[0]


def _official(meta: dict[str, Any]) -> OfficialMeta:
    return OfficialMeta.model_validate(meta.get(OFFICIAL) or meta.get("official") or {})


def _status(value: str | None) -> str:
    # Unknown statuses ("beta", none at all in early entries) were published as listed.
    return value if value in STATUSES else "active"


def _seed_server(item: SeedItem) -> dict[str, Any]:
    server: dict[str, Any] = {
        "name": item.name,
        "description": item.description,
        "version": item.version_detail.version,
        "repository": {k: v for k, v in item.repository.items() if k in ("url", "source", "id", "subfolder")},
    }
    if item.packages:
        server["packages"] = [
            {
                "registryType": package.registry_name,
                "identifier": package.name,
                **({"version": package.version} if package.version else {}),
                "transport": {"type": "stdio"},
                **({"environmentVariables": package.environment_variables} if package.environment_variables else {}),
                **({"packageArguments": package.package_arguments} if package.package_arguments else {}),
            }
            for package in item.packages
        ]
    if item.remotes:
        server["remotes"] = [{"type": remote.transport_type, "url": remote.url} for remote in item.remotes]
    return server


def parse(item: Any) -> Entry:
    """One registry item, whichever generation, as an ``Entry``; ``BadEntry`` if it cannot be one."""
    if not isinstance(item, dict):
        raise BadEntry(f"an entry is a JSON object, not {type(item).__name__}")
    try:
        if "server" in item:
            current = CurrentItem.model_validate(item)
            server, official = dict(current.server), _official(current.meta)
            status = official.status
        elif "version_detail" in item:
            seed = SeedItem.model_validate(item)
            server = _seed_server(seed)
            detail = seed.version_detail
            official = OfficialMeta(
                publishedAt=detail.release_date, updatedAt=detail.release_date, isLatest=detail.is_latest
            )
            status = None
        else:
            server = {k: v for k, v in item.items() if k not in ("_meta", "status")}
            official = _official(item.get("_meta") or {})
            status = item.get("status") if isinstance(item.get("status"), str) else None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadEntry(f"{where}: {first['msg']}") from None
    name, version = server.get("name"), server.get("version")
    if not isinstance(name, str) or not NAME.match(name):
        raise BadEntry(f"name {name!r} is not namespace/name")
    if not isinstance(version, str) or not version.strip():
        raise BadEntry(f"{name}: no version")
    if len(name) > 200 or len(version) > 100:
        raise BadEntry(f"{name[:60]}: name or version too long")
    return Entry(
        name=name,
        version=version.strip(),
        server=server,
        status=_status(status or official.status),
        published_at=official.published_at,
        updated_at=official.updated_at or official.published_at,
        is_latest=official.is_latest,
    )


def items_of(document: Any) -> list[Any]:
    """The items of a registry file or page: a bare list, or ``{"servers": [...]}``."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and isinstance(document.get("servers"), list):
        return document["servers"]
    raise BadEntry("expected a list of entries or an object with a servers list")


class RegistryError(Exception):
    """The registry did not answer with a page we can read."""


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


class RegistryClient:
    """Pages through a registry's ``/v0.1/servers`` (the official one, or any that speaks it)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, client: httpx2.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx2.Client(timeout=timeout, headers={"Accept": "application/json"})

    def page(self, *, cursor: str | None = None, updated_since: datetime | None = None) -> Page:
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if cursor:
            params["cursor"] = cursor
        if updated_since:
            params["updated_since"] = updated_since.isoformat().replace("+00:00", "Z")
        url = f"{self.base_url}/v0.1/servers"
        try:
            response = self._client.get(url, params=params)
        except httpx2.HTTPError as exc:
            raise RegistryError(f"GET {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise RegistryError(f"GET {url}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            items = items_of(body)
        except (ValueError, BadEntry) as exc:
            raise RegistryError(f"GET {url}: not a page of servers ({exc})") from None
        metadata = body.get("metadata") if isinstance(body, dict) else None
        next_cursor = (metadata or {}).get("nextCursor") or None
        return Page(items=items, next_cursor=str(next_cursor) if next_cursor else None)

    def pages(
        self, *, cursor: str | None = None, updated_since: datetime | None = None
    ) -> Iterator[tuple[Page, str | None]]:
        """Each page with the cursor it was asked with."""
        while True:
            page = self.page(cursor=cursor, updated_since=updated_since)
            yield page, cursor
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        self._client.close()
