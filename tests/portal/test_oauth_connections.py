"""OAuth clients in the portal: who sees which connected clients, disconnecting one (asked
first, CSRF-protected, its tokens dead at once, audited), and the Connect page's OAuth
instructions with the gateway's public URL."""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken, set_token_value

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.oauth.models import Connection
from apps.oauth.selectors import access_token_for_digest, gateway_resource
from apps.oauth.services import connection_consent
from tests.browser import NEEDS_CHROMIUM
from tests.factories import MembershipFactory, UserFactory
from tests.portal.test_browser import PAGE_WIDTH, TABLES, _sign_in, _viewport

CLAUDE_CALLBACK = "https://claude.ai/api/mcp/auth_callback"
CURSOR_CIMD = "https://cursor.example.com/oauth/client.json"
CONFIRM = {"confirm": "yes"}


def _application(name: str, *, source: str = "dcr", client_id: str | None = None, redirect_uris: str = CLAUDE_CALLBACK):
    extra = {"client_id": client_id} if client_id else {}
    return Application.objects.create(
        name=name,
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uris,
        registration_source=source,
        **extra,
    )


def _token(application, user, workspace, *, refresh: bool = False) -> str:
    """An access token (and its refresh token) as the token endpoint issues them: bound to
    the workspace's gateway. Returns the raw access token."""
    raw = secrets.token_urlsafe(32)
    access = AccessToken(
        user=user,
        application=application,
        expires=timezone.now() + timedelta(hours=1),
        scope="mcp",
        resource=[gateway_resource(workspace.slug)],
    )
    set_token_value(access, raw)
    access.save()
    if refresh:
        token = RefreshToken(user=user, application=application, access_token=access, resource=access.resource)
        set_token_value(token, secrets.token_urlsafe(32))
        token.save()
    return raw


def _works(raw: str) -> bool:
    """Whether the gateway's token check accepts it."""
    return access_token_for_digest(hashlib.sha256(raw.encode()).hexdigest()) is not None


def _live_tokens(application, user, workspace) -> int:
    """The access and unrevoked refresh tokens ``application`` holds for ``user`` here."""
    resource = [gateway_resource(workspace.slug)]
    access = AccessToken.objects.filter(application=application, user=user)
    refresh = RefreshToken.objects.filter(application=application, user=user, revoked__isnull=True)
    return sum(t.resource == resource for t in access) + sum(t.resource == resource for t in refresh)


def _connect(application, user, workspace, *, tokens: int = 1) -> tuple[Connection, list[str]]:
    """What the consent page and the token endpoint leave behind: a connection and tokens."""
    connection = connection_consent(application=application, user=user, workspace=workspace, scope="mcp")
    raws = [_token(application, user, workspace, refresh=n == 0) for n in range(tokens)]
    return connection, raws


def _list_url(slug: str = "acme") -> str:
    return reverse("portal:connections", args=[slug])


def _disconnect_url(connection: Connection, slug: str = "acme") -> str:
    return reverse("portal:connection-disconnect", args=[slug, connection.pk])


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def claude(db):
    return _application("Claude")


@pytest.fixture
def cursor(db):
    return _application(
        "Cursor", source="cimd", client_id=CURSOR_CIMD, redirect_uris="http://127.0.0.1:8787/callback cursor://oauth"
    )


def test_a_member_sees_only_the_clients_connected_as_them(cast, signed_in, claude, cursor):
    _connect(claude, cast.carol, cast.acme)
    _connect(cursor, cast.bob, cast.acme)
    response = signed_in(cast.carol).get(_list_url())
    assert response.status_code == 200
    body = response.content.decode()
    assert [row.connection.application for row in response.context["rows"]] == [claude]
    assert "Your connected clients" in body and ">Claude<" in body
    assert claude.client_id in body and "DCR" in body and "<code>claude.ai</code>" in body
    assert CURSOR_CIMD not in body and "bob@example.com" not in body
    assert '<th scope="col">Member</th>' not in body  # her own only: no member column


def test_owners_and_admins_see_everybodys_with_the_member(cast, signed_in, claude, cursor):
    _connect(claude, cast.carol, cast.acme)
    _connect(cursor, cast.bob, cast.acme)
    for user in (cast.alice, cast.bob):
        response = signed_in(user).get(_list_url())
        body = response.content.decode()
        assert {(r.connection.application, r.connection.user) for r in response.context["rows"]} == {
            (claude, cast.carol),
            (cursor, cast.bob),
        }, user.email
        assert '<th scope="col">Member</th>' in body and "carol@example.com" in body and "bob@example.com" in body
        # A metadata-document client is known by its URL; its redirects by host or app scheme.
        assert f"<code>{CURSOR_CIMD}</code>" in body and "Metadata document" in body
        assert "<code>127.0.0.1</code>" in body and "<code>cursor:</code>" in body


def test_nothing_of_another_workspace_shows_or_can_be_reached(cast, signed_in, claude):
    globex_connection, globex_raws = _connect(claude, cast.dave, cast.globex)
    acme_connection, acme_raws = _connect(claude, cast.carol, cast.acme)
    # dave (globex only) and carol (acme only): each workspace's pages are 404 to the other.
    dave, carol, alice = signed_in(cast.dave), signed_in(cast.carol), signed_in(cast.alice)
    for client, connection, slug in ((dave, acme_connection, "acme"), (carol, globex_connection, "globex")):
        assert client.get(_list_url(slug)).status_code == 404
        assert client.get(_disconnect_url(connection, slug)).status_code == 404
        assert client.post(_disconnect_url(connection, slug), CONFIRM).status_code == 404
    # Nor does an acme Owner reach globex's connection through acme's URLs.
    assert alice.get(_disconnect_url(globex_connection)).status_code == 404
    assert alice.post(_disconnect_url(globex_connection), CONFIRM).status_code == 404
    assert "dave@example.com" not in alice.get(_list_url()).content.decode()
    assert Connection.objects.count() == 2
    assert all(_works(raw) for raw in globex_raws + acme_raws)


def test_disconnecting_asks_first_then_revokes_that_clients_tokens_here_only(cast, signed_in, claude, cursor):
    MembershipFactory(workspace=cast.globex, user=cast.carol)
    connection, raws = _connect(claude, cast.carol, cast.acme, tokens=2)
    _, elsewhere = _connect(claude, cast.carol, cast.globex)  # the same client, her other workspace
    _, other_client = _connect(cursor, cast.carol, cast.acme)  # another client, this workspace
    client = signed_in(cast.carol)
    page = client.get(_list_url()).content.decode()
    # The list offers a link to the confirmation, not a one-click form.
    assert f'href="{_disconnect_url(connection)}"' in page
    assert f'action="{_disconnect_url(connection)}"' not in page

    asked = client.get(_disconnect_url(connection))
    assert asked.status_code == 200
    asked_html = asked.content.decode()
    assert "Disconnect Claude?" in asked_html and claude.client_id in asked_html
    assert 'name="confirm" value="yes"' in asked_html and f'href="{_list_url()}"' in asked_html
    unconfirmed = client.post(_disconnect_url(connection))
    assert unconfirmed.status_code == 200
    assert "Nothing was changed: this needs confirming. Press “Disconnect Claude” below, or Cancel." in (
        _messages(unconfirmed)
    )
    assert Connection.objects.filter(pk=connection.pk).exists() and all(_works(raw) for raw in raws)

    assert _live_tokens(claude, cast.carol, cast.acme) == 3  # two access tokens, one refresh token
    done = client.post(_disconnect_url(connection), CONFIRM, follow=True)
    assert done.redirect_chain == [(_list_url(), 302)]
    assert "Claude disconnected. 3 tokens stopped working." in _messages(done)
    assert _live_tokens(claude, cast.carol, cast.acme) == 0
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert not any(_works(raw) for raw in raws)
    left = AccessToken.objects.filter(application=claude, user=cast.carol)
    assert [t.resource for t in left] == [[gateway_resource("globex")]]
    live_refresh = RefreshToken.objects.filter(application=claude, user=cast.carol, revoked__isnull=True)
    assert [t.resource for t in live_refresh] == [[gateway_resource("globex")]]
    # Her other workspace's grant to the same client, and her other client here, still work.
    assert all(_works(raw) for raw in elsewhere + other_client)
    assert Connection.objects.filter(user=cast.carol).count() == 2
    event = AuditEvent.objects.get(action=Action.OAUTH_CLIENT_REVOKED)
    assert (event.workspace, event.actor, event.target_repr) == (cast.acme, cast.carol, "Claude")
    assert event.metadata["client_id"] == claude.client_id and event.metadata["member"] == "carol@example.com"
    # Gone now: the list no longer offers it, and its URL no longer resolves.
    assert f'href="{_disconnect_url(connection)}"' not in done.content.decode()
    assert client.post(_disconnect_url(connection), CONFIRM).status_code == 404


def test_a_member_cannot_disconnect_another_members_client(cast, signed_in, claude):
    bobs, raws = _connect(claude, cast.bob, cast.acme)
    carol = signed_in(cast.carol)
    for response in (carol.get(_disconnect_url(bobs)), carol.post(_disconnect_url(bobs), CONFIRM)):
        assert response.status_code == 403
        body = html.unescape(response.content.decode())
        assert "Only the workspace's Owners and Admins can disconnect another member's client." in body
        assert "bob@example.com" not in body  # the refusal does not say whose it is
    assert Connection.objects.filter(pk=bobs.pk).exists() and _works(raws[0])
    assert not AuditEvent.objects.filter(action=Action.OAUTH_CLIENT_REVOKED).exists()


def test_an_admin_disconnects_a_members_client(cast, signed_in, claude):
    carols, raws = _connect(claude, cast.carol, cast.acme)
    asked = signed_in(cast.bob).get(_disconnect_url(carols)).content.decode()
    assert "carol@example.com" in asked  # whose client it is, before confirming
    response = signed_in(cast.bob).post(_disconnect_url(carols), CONFIRM, follow=True)
    assert "Claude disconnected. 2 tokens stopped working." in _messages(response)  # access + refresh
    assert not Connection.objects.exists() and not _works(raws[0])
    event = AuditEvent.objects.get(action=Action.OAUTH_CLIENT_REVOKED)
    assert event.actor == cast.bob and event.metadata["member"] == "carol@example.com"


@pytest.mark.parametrize(
    ("refresh", "tokens", "said"),
    [
        (False, 0, "It held no live tokens."),
        (False, 1, "1 token stopped working."),
        (True, 1, "2 tokens stopped working."),
    ],
)
def test_the_message_counts_the_tokens_that_stopped(cast, signed_in, claude, refresh, tokens, said):
    connection = connection_consent(application=claude, user=cast.carol, workspace=cast.acme, scope="mcp")
    for _ in range(tokens):
        _token(claude, cast.carol, cast.acme, refresh=refresh)
    response = signed_in(cast.carol).post(_disconnect_url(connection), CONFIRM, follow=True)
    assert _messages(response) == [f"Claude disconnected. {said}"]


def test_disconnecting_needs_the_csrf_token(cast, claude):
    connection, raws = _connect(claude, cast.carol, cast.acme)
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.carol)
    assert client.post(_disconnect_url(connection), CONFIRM).status_code == 403
    assert Connection.objects.filter(pk=connection.pk).exists() and _works(raws[0])
    token = client.get(_disconnect_url(connection)).context["csrf_token"]
    response = client.post(_disconnect_url(connection), {**CONFIRM, "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert not Connection.objects.filter(pk=connection.pk).exists() and not _works(raws[0])


def test_the_list_refuses_post_and_anonymous(cast, signed_in, claude):
    connection, _ = _connect(claude, cast.carol, cast.acme)
    assert signed_in(cast.carol).post(_list_url()).status_code == 405
    for url in (_list_url(), _disconnect_url(connection)):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_the_list_is_paged_with_a_fixed_number_of_queries(cast, signed_in, django_assert_max_num_queries):
    for n in range(55):
        connection_consent(application=_application(f"client {n}"), user=cast.carol, workspace=cast.acme, scope="mcp")
    client = signed_in(cast.alice)
    with django_assert_max_num_queries(8):  # as the Tokens page: the navigation's counts included
        first = client.get(_list_url())
    assert len(first.context["rows"]) == 50 and first.context["page"].has_next
    assert 'href="?page=2"' in first.content.decode()
    second = client.get(_list_url() + "?page=2")
    assert len(second.context["rows"]) == 5 and not second.context["page"].has_next
    names = {r.connection.application.name for r in first.context["rows"] + second.context["rows"]}
    assert len(names) == 55


def test_every_role_has_the_clients_tab(cast, signed_in):
    for user in (cast.alice, cast.bob, cast.carol):
        body = signed_in(user).get(reverse("portal:tokens", args=["acme"])).content.decode()
        assert f'href="{_list_url()}">Clients<' in body, user.email
    page = signed_in(cast.carol).get(_list_url()).content.decode()
    assert f'href="{_list_url()}" aria-current="page">Clients<' in page
    assert "You have not connected a client yet." in page


# --- The Connect page's OAuth section -------------------------------------------------


def _oauth_snippets(body: str) -> dict[str, str]:
    return {
        key: html.unescape(text)
        for key, text in re.findall(r'<textarea id="oauth-([a-z-]+)"[^>]*>(.*?)</textarea>', body, flags=re.S)
    }


def test_the_connect_page_gives_the_public_gateway_url_for_oauth(cast, signed_in, settings):
    settings.MCPNEST_PUBLIC_URL = "https://nest.example.com"
    response = signed_in(cast.carol).get(reverse("portal:connect", args=["acme"]))
    body = response.content.decode()
    url = "https://nest.example.com/api/gw/acme"
    # The page was opened on testserver; OAuth tokens are bound to the public URL, so that one.
    assert response.context["gateway_url"] == "http://testserver/api/gw/acme"
    assert f'id="oauth-url" type="text" readonly value="{url}"' in body
    assert 'value="https://nest.example.com/.well-known/oauth-protected-resource/api/gw/acme"' in body
    snippets = _oauth_snippets(body)
    assert set(snippets) == {"claude-code", "vscode", "cursor"}
    assert snippets["claude-code"] == f"claude mcp add --transport http acme {url}\n"
    assert json.loads(snippets["vscode"]) == {"servers": {"acme": {"type": "http", "url": url}}}
    assert json.loads(snippets["cursor"]) == {"mcpServers": {"acme": {"url": url}}}
    for client in ("Claude (claude.ai and Claude Desktop)", "ChatGPT", "MCP Inspector"):
        assert client in body
    assert "Add custom connector" in body and "npx @modelcontextprotocol/inspector" in body
    assert f'href="{_list_url()}"' in body
    assert "needs a public HTTPS URL" not in body
    for key in snippets:
        assert f'data-copy="oauth-{key}"' in body


def test_the_connect_page_warns_when_cloud_clients_cannot_reach_the_url(cast, signed_in, settings):
    settings.MCPNEST_PUBLIC_URL = "http://127.0.0.1:8000"
    body = html.unescape(signed_in(cast.carol).get(reverse("portal:connect", args=["acme"])).content.decode())
    assert 'value="http://127.0.0.1:8000/api/gw/acme"' in body
    assert "Claude connects from Anthropic's cloud, so it needs a public HTTPS URL" in body


# --- Layout -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@NEEDS_CHROMIUM
def test_the_clients_page_fits_a_desktop_and_a_phone(live_server, browser, cast):
    member = UserFactory(email="firstname.middlename.lastname-consultant@subsidiary.example-enterprise.com")
    MembershipFactory(workspace=cast.acme, user=member)
    for n in range(3):
        application = _application(
            "Claude Desktop (Electron, enterprise managed build)" + "-x" * 10,
            source="cimd",
            client_id=f"https://clients.example-enterprise.com/oauth/metadata/documents/claude-desktop-{n}.json",
            redirect_uris="http://127.0.0.1:33418/callback https://auth.callbacks.example-enterprise.com/cb",
        )
        _connect(application, member, cast.acme)
    driver = browser()
    _sign_in(driver, live_server.url, cast.alice.email)
    url = f"{live_server.url}{_list_url()}"
    for width, scrolls_allowed in ((1400, False), (375, True)):
        _viewport(driver, width, 900)
        driver.get(url)
        assert len(driver.find_elements("css selector", "main tbody tr")) == 3
        page = driver.execute_script(PAGE_WIDTH)
        assert page["scroll"] <= page["inner"] and page["scroll"] <= page["client"], (width, page)
        tables = driver.execute_script(TABLES)
        assert tables and all(t["wrapped"] and t["inside"] for t in tables), (width, tables)
        assert scrolls_allowed or not any(t["scrolls"] for t in tables), (width, tables)
        # The workspace tabs wrap rather than widen the page.
        nav = driver.execute_script(
            "const n = document.querySelector('nav.tabs ul'); return [n.scrollWidth, n.clientWidth];"
        )
        assert nav[0] <= nav[1], (width, nav)
        driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"portal-clients-{width}.png"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@NEEDS_CHROMIUM
def test_the_connect_pages_oauth_section_fits_a_phone(live_server, browser, cast, settings):
    settings.MCPNEST_PUBLIC_URL = "https://gateway.mcpnest.subsidiary.example-enterprise.com"
    driver = browser()
    _sign_in(driver, live_server.url, cast.carol.email)
    _viewport(driver, 375, 800)
    driver.get(f"{live_server.url}{reverse('portal:connect', args=['acme'])}#oauth")
    page = driver.execute_script(PAGE_WIDTH)
    assert page["scroll"] <= page["inner"] and page["scroll"] <= page["client"], page
    # The long URL stays inside its copy row and snippet boxes (which scroll themselves).
    boxes = driver.execute_script(
        "const card = document.getElementById('oauth').getBoundingClientRect();"
        "return [...document.querySelectorAll('#oauth input, #oauth textarea')]"
        ".map(e => e.getBoundingClientRect().right <= card.right + 0.5);"
    )
    assert boxes and all(boxes), boxes
    _viewport(driver, 375, 2400)
    driver.save_screenshot(str(Path(tempfile.gettempdir()) / "portal-connect-oauth-375.png"))
