"""Reads for the marketplace: one server with its versions (search is ``apps.marketplace.search``)."""

from __future__ import annotations

from dataclasses import dataclass

from apps.marketplace.configs import InstallConfigs, Launch, NoLaunch, install_configs, launches
from apps.marketplace.models import Server, ServerVersion


def server_named(name: str) -> Server | None:
    return Server.objects.listed().select_related("publisher").filter(name=name).first()


@dataclass(frozen=True)
class ServerPage:
    """A listed server with what its page, its API and "Add to workspace" show of it."""

    server: Server
    versions: list[ServerVersion]  # the latest first
    document: dict  # the latest server.json
    configs: InstallConfigs | None  # None: nothing a client can install
    no_launch: str  # why not, then
    remote: Launch | None  # its first hosted endpoint

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
        return cls(server, found, document, configs, no_launch, remote)
