"""From a marketplace page into a workspace: a server's hosted endpoint becomes an upstream.

The entries are real registry entries whose remote URL is pointed at a local MCP server,
so the approval that follows really lists its tools (nothing leaves the machine)."""

from __future__ import annotations

import copy
import json
import re
import uuid

import pytest
from django.urls import reverse

from apps.gateway.models import ToolPin, UpstreamServer
from apps.marketplace.models import Install
from apps.marketplace.services import curation, registry_index
from tests.browser import NEEDS_CHROMIUM
from tests.gateway.conftest import upstream  # noqa: F401 - fixture: a real local MCP server
from tests.marketplace.registry_server import OFFICIAL, SNAPSHOT, entries
from tests.portal.test_browser import _messages, _sign_in, _submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def remote_servers(tmp_path, upstream):  # noqa: F811
    """Two real entries, pointed at the local server: one without headers, one whose remote
    needs a secret header (``Authorization: Bearer {…}``)."""
    items = [i for i in entries(SNAPSHOT) if i["_meta"][OFFICIAL]["isLatest"]]

    def remote_only(item, with_headers):
        server = item["server"]
        if server.get("packages") or not server.get("remotes"):
            return False
        remote = server["remotes"][0]
        return remote.get("type") == "streamable-http" and bool(remote.get("headers")) == with_headers

    plain = copy.deepcopy(next(i for i in items if remote_only(i, False)))
    keyed = copy.deepcopy(
        next(
            i
            for i in items
            if remote_only(i, True) and any(h.get("isSecret") for h in i["server"]["remotes"][0]["headers"])
        )
    )
    for item in (plain, keyed):
        item["server"]["remotes"] = [{**item["server"]["remotes"][0], "url": upstream.url}]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([plain, keyed]))
    assert registry_index(file=path).status == "done"
    return plain["server"], keyed["server"]


def _add(client, name, **data):
    return client.post(reverse("portal:marketplace-add", args=[name]), data, follow=True)


def test_an_owner_adds_a_remote_server_and_its_tools_are_pinned(cast, signed_in, remote_servers):
    plain, _ = remote_servers
    alice = signed_in(cast.alice)
    page = alice.get(reverse("marketplace:detail", args=[plain["name"]])).content.decode()
    assert "Add to a workspace" in page and '<option value="acme">Acme</option>' in page

    done = _add(alice, plain["name"], workspace="acme")
    server = UpstreamServer.objects.get(workspace=cast.acme)
    assert done.redirect_chain[-1][0] == reverse("portal:security", args=["acme"]) + "#servers"
    assert f"as “{server.slug}” in Acme" in done.content.decode()
    assert server.status == UpstreamServer.Status.APPROVED and server.url == plain["remotes"][0]["url"]
    assert set(ToolPin.objects.filter(server=server).values_list("tool_name", flat=True)) >= {"echo", "add"}


def test_a_member_requests_it_and_a_secret_header_is_required_and_kept_encrypted(cast, signed_in, remote_servers):
    _, keyed = remote_servers
    carol = signed_in(cast.carol)
    header = next(h for h in keyed["remotes"][0]["headers"] if h.get("isSecret"))
    refused = _add(carol, keyed["name"], workspace="acme")
    assert "for its headers: give a value for each" in refused.content.decode()
    assert not UpstreamServer.objects.exists()

    page = carol.get(reverse("marketplace:detail", args=[keyed["name"]])).content.decode()
    inputs = re.findall(r'<input id="var-[^"]+" name="(var_[^"]+)" type="([a-z]+)"', page)
    assert inputs and all(kind == "password" for _, kind in inputs)
    values = {name: "sk-live-123" for name, _ in inputs}
    _add(carol, keyed["name"], workspace="acme", **values)
    server = UpstreamServer.objects.get(workspace=cast.acme)
    assert server.status == UpstreamServer.Status.REQUESTED and server.requested_by == cast.carol
    stored = server.get_headers()[header["name"]]
    assert "sk-live-123" in stored and "{" not in stored
    assert "sk-live-123" not in server.headers_encrypted


def test_outsiders_and_servers_without_an_endpoint_add_nothing(cast, signed_in, client, remote_servers):
    plain, _ = remote_servers
    dave = signed_in(cast.dave)
    assert "Choose one of your workspaces." in _add(dave, plain["name"], workspace="acme").content.decode()
    anonymous = client.post(reverse("portal:marketplace-add", args=[plain["name"]]), {"workspace": "acme"})
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert signed_in(cast.alice).post(reverse("portal:marketplace-add", args=["no.such/server"])).status_code == 404
    assert signed_in(cast.alice).get(reverse("portal:marketplace-add", args=[plain["name"]])).status_code == 405
    assert not UpstreamServer.objects.exists()


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_in_a_browser_search_open_copy_and_add(live_server, browser, cast, remote_servers, monkeypatch):
    """Chromium: search the marketplace, open a server, copy its Cursor config (an install
    is counted), add it to a workspace; the Security tab lists it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # This test's own install rate-limit counters (the cache may be a shared Redis).
    monkeypatch.setattr(curation, "RATE_KEY", f"test-{uuid.uuid4().hex}:" + curation.RATE_KEY)
    plain, _ = remote_servers
    driver = browser()
    _sign_in(driver, live_server.url, cast.alice.email)
    driver.get(f"{live_server.url}/servers/")
    box = driver.find_element(By.ID, "q")
    box.send_keys(plain["name"].split("/")[1])
    _submit(driver, driver.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]"))
    assert "1 server" in driver.find_element(By.ID, "results-count").text
    driver.find_element(By.PARTIAL_LINK_TEXT, plain.get("title") or plain["name"]).click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "config-cursor"))
    cursor = driver.find_element(By.ID, "config-cursor")
    assert json.loads(cursor.get_attribute("value"))["mcpServers"]
    copy_button = driver.find_element(By.CSS_SELECTOR, "button[data-copy='config-cursor']")
    copy_button.click()
    # Headless Chromium may refuse the clipboard: then the text is selected for Ctrl+C instead.
    WebDriverWait(driver, 5).until(
        lambda d: copy_button.text != "Copy" or d.execute_script("return document.activeElement.id") == "config-cursor"
    )
    # The press was counted, as alice's install through Cursor.
    WebDriverWait(driver, 10).until(lambda d: Install.objects.filter(server__name=plain["name"]).exists())
    install = Install.objects.get(server__name=plain["name"])
    assert install.via == "cursor" and install.visitor == curation.visitor_hash(f"user:{cast.alice.pk}")
    _submit(driver, driver.find_element(By.XPATH, "//button[normalize-space()='Add to workspace']"))
    assert driver.current_url.endswith("/w/acme/security/#servers")
    assert "in Acme; its tools are being approved." in _messages(driver)
    assert UpstreamServer.objects.get(workspace=cast.acme).url == plain["remotes"][0]["url"]
