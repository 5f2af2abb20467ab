"""The cast for a gateway under test, built with the real services (as an operator would):
workspace ``acme`` with alice (Owner), bob (Admin) and carol (Member); ``globex`` with dave
(Owner). Both get a high per-IP rate limit (every test talks from 127.0.0.1); each person
gets a gateway token.

* In a test on the Django test database: ``build(servers=[("acme", "fix", url)])``.
* Against any other database (the throwaway PostgreSQL cluster)::

      DATABASE_URL=... python -m tests.faults.setup_data --server acme:fix:http://127.0.0.1:PORT/mcp

  prints one line ``FAULTS-WORLD {"tokens": {...}, "prefixes": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

MARKER = "FAULTS-WORLD "
RATE_LIMIT = 1_000_000
PEOPLE = {"alice": "acme", "bob": "acme", "carol": "acme", "dave": "globex"}
OWNERS = {"acme": "alice", "globex": "dave"}


@dataclass
class World:
    tokens: dict[str, str]  # person -> raw gateway token (mng_…)
    prefixes: dict[str, str]  # person -> the token's display prefix
    servers: dict[str, str] = field(default_factory=dict)  # "workspace:server" -> url

    def to_json(self) -> str:
        return json.dumps({"tokens": self.tokens, "prefixes": self.prefixes, "servers": self.servers})

    @classmethod
    def from_json(cls, text: str) -> World:
        data = json.loads(text)
        return cls(tokens=data["tokens"], prefixes=data["prefixes"], servers=data.get("servers", {}))


def add_server(workspace_slug: str, server_slug: str, url: str) -> None:
    """Added by the workspace's Owner: approved, every tool it lists now pinned."""
    from apps.accounts.models import User
    from apps.gateway.services import server_add
    from apps.rbac.access import access_for
    from apps.workspaces.models import Workspace

    workspace = Workspace.objects.get(slug=workspace_slug)
    owner = User.objects.get(email=f"{OWNERS[workspace_slug]}@example.com")
    server = server_add(access=access_for(user=owner, workspace=workspace), slug=server_slug, url=url)
    if not server.health_ok:
        raise RuntimeError(f"upstream {server_slug} at {url} was not reachable when added: {server.health_detail}")


def build(*, servers: Iterable[tuple[str, str, str]] = (), rate_limit: int = RATE_LIMIT) -> World:
    from apps.accounts.models import User
    from apps.rbac.access import access_for
    from apps.rbac.roles import Role
    from apps.tokens.services import token_create
    from apps.workspaces.services import member_add, workspace_create, workspace_set_rate_limit

    users = {name: User.objects.create_user(email=f"{name}@example.com", password=None) for name in PEOPLE}
    workspaces = {
        "acme": workspace_create(actor=users["alice"], slug="acme", name="Acme"),
        "globex": workspace_create(actor=users["dave"], slug="globex", name="Globex"),
    }
    member_add(workspace=workspaces["acme"], user=users["bob"], role=Role.ADMIN, actor=users["alice"])
    member_add(workspace=workspaces["acme"], user=users["carol"], role=Role.MEMBER, actor=users["alice"])
    for slug, workspace in workspaces.items():
        owner = access_for(user=users[OWNERS[slug]], workspace=workspace)
        workspace_set_rate_limit(access=owner, per_minute=rate_limit)
    world = World(tokens={}, prefixes={})
    for workspace_slug, server_slug, url in servers:
        add_server(workspace_slug, server_slug, url)
        world.servers[f"{workspace_slug}:{server_slug}"] = url
    for name, slug in PEOPLE.items():
        owner = access_for(user=users[OWNERS[slug]], workspace=workspaces[slug])
        issued = token_create(access=owner, member=users[name], name=f"faults {name}")
        world.tokens[name] = issued.raw
        world.prefixes[name] = issued.token.prefix
    return world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", default=[], metavar="WORKSPACE:SLUG:URL")
    parser.add_argument("--rate-limit", type=int, default=RATE_LIMIT)
    args = parser.parse_args(argv)
    servers = []
    for spec in args.server:
        workspace_slug, server_slug, url = spec.split(":", 2)
        servers.append((workspace_slug, server_slug, url))

    import django

    django.setup()
    world = build(servers=servers, rate_limit=args.rate_limit)
    sys.stdout.write(MARKER + world.to_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
