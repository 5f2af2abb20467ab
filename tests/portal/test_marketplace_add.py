""" "Add to workspace" whichever way a server runs: a package of the hosted catalog goes to the
Hosted tab's deploy form, a stdio server the catalog cannot run gets the command to run it
locally, a hosted endpoint becomes an upstream (as before); each add counts as an install,
and only a workspace of one's own can be chosen. The Connect page gives the workspace's
own registry URL."""

from __future__ import annotations

import html
import re
import uuid

import pytest
from django.urls import reverse

from apps.gateway.models import UpstreamServer
from apps.hosting.models import AllowedImage
from apps.marketplace.models import Install, Server
from apps.marketplace.services import curation
from tests.marketplace.test_search import NPM, REMOTE, index, item

pytestmark = pytest.mark.django_db

FILESYSTEM = "io.github.modelcontextprotocol/server-filesystem"
WEATHER = "io.github.acme/weather-forecast"
TICKETS = "com.example/tickets"


@pytest.fixture
def servers(tmp_path, monkeypatch):
    # This test's own install rate-limit counters (the cache may be a shared Redis).
    monkeypatch.setattr(curation, "RATE_KEY", f"test-{uuid.uuid4().hex}:" + curation.RATE_KEY)
    filesystem = {**NPM, "identifier": "@modelcontextprotocol/server-filesystem", "environmentVariables": []}
    index(
        tmp_path,
        [
            item(FILESYSTEM, description="Read and write files.", packages=[filesystem]),
            item(WEATHER, description="Forecasts.", packages=[NPM]),
            # A local endpoint that refuses connections: the request's check fails at once.
            item(TICKETS, description="Tickets.", remotes=[{**REMOTE, "url": "http://127.0.0.1:9/mcp"}]),
        ],
    )
    AllowedImage.objects.update_or_create(
        slug="filesystem",
        defaults={
            "name": "Filesystem",
            "image": "mcpnest/runtime",
            "mcp_command": "mcp-server-filesystem /tmp",
            "registry_package": "npm:@modelcontextprotocol/server-filesystem",
        },
    )


def _add(client, name, **data):
    return client.post(reverse("portal:marketplace-add", args=[name]), data)


def _installs(name: str) -> int:
    return Install.objects.filter(server=Server.objects.get(name=name), via=Install.Via.WORKSPACE).count()


def test_a_server_of_the_hosted_catalog_goes_to_its_deploy_form(cast, signed_in, servers):
    carol = signed_in(cast.carol)
    response = _add(carol, FILESYSTEM, workspace="acme")
    hosted = reverse("portal:hosted", args=["acme"])
    assert response.status_code == 302 and response["Location"] == f"{hosted}?deploy=filesystem#image-filesystem"
    page = carol.get(response["Location"]).content.decode()
    assert 'id="chosen"' in page and "fill in its form below to request it" in page  # carol is a Member
    assert 'id="image-filesystem" aria-labelledby="image-filesystem-h" aria-current="true"' in page
    assert _installs(FILESYSTEM) == 1 and not UpstreamServer.objects.exists()
    assert 'id="chosen"' not in carol.get(hosted + "?deploy=no-such-image").content.decode()


def test_a_stdio_server_the_catalog_cannot_run_is_for_running_locally(cast, signed_in, servers):
    alice = signed_in(cast.alice)
    response = _add(alice, WEATHER, workspace="acme")
    detail = reverse("marketplace:detail", args=[WEATHER])
    assert response.status_code == 302 and response["Location"] == f"{detail}#install-h"
    shown = html.unescape(alice.get(detail).content.decode())
    message = re.search(r"[^>]*MCPNest cannot host it yet[^<]*", shown).group(0)
    command = (
        "claude mcp add --transport stdio --env 'WEATHER_API_KEY=${WEATHER_API_KEY}' "
        "weather-forecast -- npx -y @acme/weather-forecast@1.2.0"
    )
    assert command in message
    assert _installs(WEATHER) == 0 and not UpstreamServer.objects.exists()


def test_a_hosted_endpoint_still_becomes_an_upstream_and_counts_as_an_install(cast, signed_in, servers):
    response = _add(signed_in(cast.carol), TICKETS, workspace="acme")
    assert (
        response.status_code == 302 and response["Location"] == reverse("portal:security", args=["acme"]) + "#servers"
    )
    upstream = UpstreamServer.objects.get(workspace=cast.acme)
    assert (upstream.slug, upstream.status, upstream.requested_by) == ("tickets", "requested", cast.carol)
    assert _installs(TICKETS) == 1


def test_only_a_workspace_of_ones_own_can_be_chosen(cast, signed_in, servers):
    dave, carol = signed_in(cast.dave), signed_in(cast.carol)
    for client, workspace in ((dave, "acme"), (carol, "globex"), (carol, "")):
        for name in (FILESYSTEM, TICKETS, WEATHER):
            response = _add(client, name, workspace=workspace)
            assert response["Location"] == reverse("marketplace:detail", args=[name])
    assert "Choose one of your workspaces." in dave.get(reverse("marketplace:detail", args=[TICKETS])).content.decode()
    assert not UpstreamServer.objects.exists() and not Install.objects.exists()


def test_the_connect_page_gives_the_workspace_registry(cast, signed_in):
    page = signed_in(cast.carol).get(reverse("portal:connect", args=["acme"])).content.decode()
    assert 'value="http://testserver/api/registry/acme/v0.1/servers"' in page
