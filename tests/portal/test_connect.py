"""The Connect page: the absolute gateway URL and ready-to-paste client configurations."""

from __future__ import annotations

import html
import json
import re

from django.test import Client
from django.urls import reverse

from apps.tokens.services import token_create

RAW_TOKEN = re.compile(r"mng_[0-9a-f]{48}")


def _connect_url(slug: str = "acme") -> str:
    return reverse("portal:connect", args=[slug])


def _snippets(body: str) -> dict[str, str]:
    return {
        key: html.unescape(text)
        for key, text in re.findall(r'<textarea id="config-([a-z-]+)"[^>]*>(.*?)</textarea>', body, flags=re.S)
    }


def test_every_member_gets_the_configs_with_a_placeholder_token(cast, signed_in):
    for user in (cast.alice, cast.bob, cast.carol):
        response = signed_in(user).get(_connect_url())
        assert response.status_code == 200, user.email
    body = response.content.decode()
    gateway = "http://testserver/api/gw/acme"
    assert f'value="{gateway}"' in body
    assert reverse("portal:tokens", args=["acme"]) in body
    snippets = _snippets(body)
    assert set(snippets) == {"claude-desktop", "claude-code", "cursor", "vscode", "windsurf"}
    assert json.loads(snippets["cursor"])["mcpServers"]["acme"] == {
        "url": gateway,
        "headers": {"Authorization": "Bearer mng_YOUR_TOKEN"},
    }
    assert json.loads(snippets["vscode"])["servers"]["acme"]["type"] == "http"
    assert json.loads(snippets["windsurf"])["mcpServers"]["acme"]["serverUrl"] == gateway
    desktop = json.loads(snippets["claude-desktop"])["mcpServers"]["acme"]
    assert desktop["args"][:3] == ["-y", "mcp-remote@0.15.1", gateway]
    assert snippets["claude-code"].startswith(f"claude mcp add --transport http acme {gateway} ")
    # Each snippet has a copy button for it.
    for key in snippets:
        assert f'data-copy="config-{key}"' in body


def test_the_page_never_carries_a_real_token(cast, signed_in):
    token_create(access=cast.access(cast.carol), member=cast.carol, name="laptop")
    body = signed_in(cast.carol).get(_connect_url()).content.decode()
    assert not RAW_TOKEN.search(body)
    assert "mng_YOUR_TOKEN" in body


def test_the_url_follows_the_request_host_and_scheme(cast, settings):
    settings.ALLOWED_HOSTS = ["nest.example.com"]
    client = Client(HTTP_HOST="nest.example.com")
    client.force_login(cast.alice)
    response = client.get(_connect_url(), secure=True)
    assert response.context["gateway_url"] == "https://nest.example.com/api/gw/acme"
    # The overview shows the same URL, from the gateway's named route.
    overview = client.get(reverse("portal:workspace", args=["acme"]), secure=True)
    assert overview.context["gateway_url"] == "https://nest.example.com/api/gw/acme"


def test_outsider_gets_404_and_post_is_refused(cast, signed_in):
    dave = signed_in(cast.dave)
    assert dave.get(_connect_url()).status_code == 404
    assert dave.post(_connect_url()).status_code == 404
    assert dave.get(_connect_url("no-such-workspace")).status_code == 404
    assert signed_in(cast.carol).post(_connect_url()).status_code == 405


def test_anonymous_is_sent_to_sign_in(db):
    response = Client().get(_connect_url())
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_every_role_has_the_tab(cast, signed_in):
    for user in (cast.alice, cast.carol):
        body = signed_in(user).get(reverse("portal:tokens", args=["acme"])).content.decode()
        assert f'href="{_connect_url()}">Connect<' in body
