"""The portal in a real Chromium: sign in, create a workspace, invite, accept, change a role,
issue a token and see it exactly once."""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

import pytest
from django.core import mail

from apps.rbac.roles import Role
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_verify
from apps.workspaces.models import Membership
from tests.browser import BROWSER_TESTS
from tests.factories import PASSWORD, UserFactory

SCREENSHOT = Path(tempfile.gettempdir()) / "portal-tokens.png"  # looked at by whoever changes the page
RAW_TOKEN = re.compile(r"mng_[0-9a-f]{48}")

pytestmark = BROWSER_TESTS


def _submit(driver, button) -> None:
    """Click a submit button and wait until the next page has replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button.click()
    # Mid-navigation, Chromium sometimes answers "Node ... does not belong to the document"
    # instead of "stale element": the page is being replaced either way, so ask again.
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(expected_conditions.staleness_of(button))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _sign_in(driver, base: str, email: str, *, next_url: str = "") -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/accounts/login/" + (f"?next={next_url}" if next_url else ""))
    driver.find_element(By.NAME, "login").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    _submit(driver, driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    # Wait for the page after the sign-in's redirects: an element read too early can belong to
    # a document that is being replaced ("Node ... does not belong to the document").
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: email in d.find_element(By.CSS_SELECTOR, ".topbar .who").text
    )


def _messages(driver) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(el.text for el in driver.find_elements(By.CSS_SELECTOR, ".messages li"))


def test_owner_invites_promotes_and_issues_a_token(live_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base = live_server.url
    olivia = UserFactory(email="olivia@example.com")
    ivan = UserFactory(email="ivan@example.com")

    # The owner signs in through allauth's form and creates a workspace.
    owner = browser()
    _sign_in(owner, base, olivia.email)
    assert owner.find_element(By.TAG_NAME, "h1").text == "My workspaces"
    owner.find_element(By.LINK_TEXT, "New workspace").click()
    owner.find_element(By.NAME, "slug").send_keys("nest")
    owner.find_element(By.NAME, "name").send_keys("The Nest")
    _submit(owner, owner.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    assert owner.current_url == f"{base}/w/nest/"
    assert f"{base}/api/gw/nest" == owner.find_element(By.ID, "gateway-url").get_attribute("value")

    # ...and invites ivan as a Member; the email carries the link.
    owner.find_element(By.LINK_TEXT, "Members").click()
    owner.find_element(By.NAME, "email").send_keys(ivan.email)
    Select(owner.find_element(By.NAME, "role")).select_by_value(Role.MEMBER)
    _submit(owner, owner.find_element(By.XPATH, "//button[normalize-space()='Send invitation']"))
    assert "Invitation sent to ivan@example.com." in _messages(owner)
    (message,) = mail.outbox
    link = re.search(rf"{re.escape(base)}/invitations/\S+/", message.body).group(0)

    # ivan, in his own browser, follows the link, signs in and accepts.
    invitee = browser()
    invitee.get(link)
    assert "/accounts/login/" in invitee.current_url
    _sign_in(invitee, base, ivan.email, next_url=link.removeprefix(base))
    assert invitee.current_url == link
    assert "Member" in invitee.find_element(By.CSS_SELECTOR, "dl.facts").text
    _submit(invitee, invitee.find_element(By.XPATH, "//button[normalize-space()='Accept invitation']"))
    assert invitee.current_url == f"{base}/w/nest/"
    assert "You joined as Member" in _messages(invitee)
    membership = Membership.objects.get(workspace__slug="nest", user=ivan)
    assert membership.role == Role.MEMBER

    # The owner makes ivan an Admin.
    owner.refresh()
    row = owner.find_element(By.ID, f"member-{membership.pk}")
    Select(row.find_element(By.NAME, "role")).select_by_value(Role.ADMIN)
    _submit(owner, row.find_element(By.XPATH, ".//button[normalize-space()='Change role']"))
    assert "ivan@example.com is now Admin." in _messages(owner)
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN

    # The owner creates a token: shown once, with a copy button...
    owner.find_element(By.LINK_TEXT, "Tokens").click()
    owner.find_element(By.NAME, "name").send_keys("Claude Desktop")
    holder = Select(owner.find_element(By.NAME, "holder"))
    assert holder.first_selected_option.text == "olivia@example.com (Owner)"  # yourself by default
    owner.find_element(By.NAME, "expires_days").send_keys("90")
    _submit(owner, owner.find_element(By.XPATH, "//button[normalize-space()='Create token']"))
    raw = owner.find_element(By.ID, "raw-token").get_attribute("value")
    assert RAW_TOKEN.fullmatch(raw)
    token = token_verify(raw)
    assert token is not None and token.user == olivia and token.name == "Claude Desktop"
    assert "will not be shown again" in owner.find_element(By.CSS_SELECTOR, ".issued").text
    assert owner.find_element(By.CSS_SELECTOR, "button[data-copy='raw-token']").is_displayed()
    owner.save_screenshot(str(SCREENSHOT))

    # Reloading the page shows the token no more and creates no second one (issue #7, item 7).
    owner.refresh()
    assert not owner.find_elements(By.ID, "raw-token")
    assert GatewayToken.objects.filter(workspace__slug="nest", name="Claude Desktop").count() == 1

    # ...and never again: the list shows only its prefix.
    owner.get(f"{base}/w/nest/tokens/")
    assert raw not in owner.page_source
    assert not RAW_TOKEN.search(owner.page_source)
    assert not owner.find_elements(By.ID, "raw-token")
    assert f"{token.prefix}…" in owner.find_element(By.CSS_SELECTOR, "table").text

    # Revoking asks first (item 8): the link leads to a confirmation, nothing changes before it.
    owner.find_element(By.CSS_SELECTOR, f"a[aria-label='Revoke token {token.prefix}']").click()
    token.refresh_from_db()
    assert token.is_active and token.prefix in owner.find_element(By.CSS_SELECTOR, "section.card.danger").text
    _submit(owner, owner.find_element(By.CSS_SELECTOR, "section.card.danger button[type=submit]"))
    token.refresh_from_db()
    assert not token.is_active

    # Removing a member asks first too.
    owner.get(f"{base}/w/nest/members/")
    owner.find_element(By.ID, f"member-{membership.pk}").find_element(By.PARTIAL_LINK_TEXT, "Remove").click()
    assert Membership.objects.filter(pk=membership.pk).exists()
    _submit(owner, owner.find_element(By.CSS_SELECTOR, "section.card.danger button[type=submit]"))
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert "ivan@example.com removed" in _messages(owner)


def test_the_demo_shows_a_real_server_whose_tools_the_printed_token_calls(live_server, browser, monkeypatch, gateway):
    """`make run`'s demo (issue #7, item 10): the demo server is in the workspace with its real
    tools, and the token the demo prints lists and calls them through the gateway."""
    from io import StringIO

    import httpx2
    from django.core.management import call_command
    from selenium.webdriver.common.by import By

    from apps.gateway import demo_upstream
    from tests.gateway.upstream import running

    monkeypatch.setenv("MCPNEST_DEMO_PASSWORD", PASSWORD)
    with running(demo_upstream.build()) as upstream:
        monkeypatch.setattr(demo_upstream, "PORT", upstream.port)
        out = StringIO()
        call_command("seed_demo", stdout=out)
        raw = RAW_TOKEN.search(out.getvalue()).group(0)

        demo = browser()
        _sign_in(demo, live_server.url, "demo@mcpnest.local")
        demo.get(f"{live_server.url}/w/demo/security/")
        page = demo.find_element(By.TAG_NAME, "main").text
        assert demo_upstream.SLUG in page and all(tool in page for tool in demo_upstream.TOOLS)

        headers = {
            "Authorization": f"Bearer {raw}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        # The gateway as production serves it (uvicorn, mcpnest.asgi); the live server is WSGI.
        with httpx2.Client(base_url=gateway(), headers=headers, timeout=30) as client:
            hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "browser-test"}}
            opened = client.post(
                "/api/gw/demo", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
            )
            client.headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
            client.headers["MCP-Protocol-Version"] = "2025-11-25"
            listed = client.post("/api/gw/demo", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).json()
            called = client.post(
                "/api/gw/demo",
                json={
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "tools/call",
                    "params": {"name": "word_count", "arguments": {"text": "one two three"}},
                },
            ).json()
    assert {tool["name"] for tool in listed["result"]["tools"]} == set(demo_upstream.TOOLS)
    assert called["result"]["content"][0]["text"] == "3"


def test_a_check_run_by_a_worker_later_is_followed_on_the_page(live_server, browser, cast, monkeypatch):
    """Issue 8: with a broker, *Check now* only queues the check. The page says it is under way,
    polls, and shows the outcome once a worker has run it, without the reader reloading."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from apps.gateway import tasks
    from apps.gateway.models import UpstreamServer
    from apps.gateway.services import server_add
    from mcpnest.celery import app as celery_app
    from tests.gateway.upstream import build_server, running

    with running(build_server("browser")) as upstream:
        server = server_add(access=cast.access(cast.alice), slug="fix", url=upstream.url)  # approved in-process
        # From here tasks go to the (in-memory) broker, and no worker takes them until this test does.
        monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
        alice = browser()
        _sign_in(alice, live_server.url, cast.alice.email)
        alice.get(f"{live_server.url}/w/acme/security/")
        _submit(alice, alice.find_element(By.CSS_SELECTOR, "button[aria-label='Check fix now']"))
        assert "Checking server “fix”; the result appears here shortly." in _messages(alice)
        pending = alice.find_element(By.CSS_SELECTOR, f"#server-{server.pk} [data-check-url]")
        assert pending.get_attribute("role") == "status" and "Checking…" in pending.text

        tasks.server_check_run(server.pk)  # the worker gets to it
        WebDriverWait(alice, 20).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-check-url]"))
    row = alice.find_element(By.ID, f"server-{server.pk}").text
    assert "OK" in row and "4 tools" in row and "Checking…" not in row
    assert UpstreamServer.objects.get(pk=server.pk).check_state == UpstreamServer.CheckState.DONE


# --- Responsive tables (issue #7, item #14) ------------------------------------------

LONG_EMAIL = "integration.service.account.for.nightly-reports@subsidiary.example-corporation.com"
LONG_URL = "https://knowledge-base-production.eu-west-1.internal.example-corporation.com/mcp/v1/streamable"
IPV6 = "2001:0db8:85a3:0000:0000:8a2e:0370:7334"


def _long_rows(cast) -> None:
    """Audit events and tool calls with the longest values real rows carry."""
    from apps.audit.events import Action
    from apps.audit.services import audit_event_record, tool_calls_record

    member = UserFactory(email=LONG_EMAIL)
    for n in range(3):
        audit_event_record(
            workspace=cast.acme,
            actor=member,
            action=Action.SERVER_UPDATED,
            target_type="server",
            target_id=n,
            target_repr=f"knowledge-base-production-eu-west-{n}",
            metadata={
                "url": [LONG_URL, LONG_URL.replace("v1", "v2")],
                "fingerprint": "f0e1d2c3b4a5" * 6,
                "headers": ["Authorization", "X-Tenant-Identifier-For-Upstream-Routing"],
            },
            ip=IPV6,
        )
    tool_calls_record(
        [
            {
                "workspace_id": cast.acme.pk,
                "member_id": member.pk,
                "member_repr": LONG_EMAIL,
                "token_prefix": "mng_0123abcd",
                "server_slug": "knowledge-base-production-eu-west",
                "tool_name": "search_documents_by_semantic_similarity_with_metadata_filters",
                "method": "tools/call",
                "status": 502,
                "error_code": -32603,
                "latency_ms": 12345,
                "client_ip": IPV6,
                "client_name": "Claude Desktop (Electron, enterprise managed build)",
                "client_version": "0.12.345-beta.67+build.890",
                "shadow_blocked": True,
            }
            for _ in range(3)
        ]
    )


def _viewport(driver, width: int, height: int) -> None:
    """Make the page's viewport exactly ``width`` × ``height`` CSS pixels, like a window of that size."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


PAGE_WIDTH = (
    "return {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,"
    " inner: window.innerWidth}"
)
# Each table's scroll container, and whether it (a) stays inside its card and (b) must scroll.
TABLES = """
return [...document.querySelectorAll('main table')].map(table => {
  const box = table.closest('.table-scroll'), card = table.closest('.card');
  return {
    wrapped: !!box,
    inside: !!box && !!card && box.getBoundingClientRect().right <= card.getBoundingClientRect().right + 0.5,
    scrolls: !!box && box.scrollWidth > box.clientWidth,
  };
});
"""


@pytest.mark.parametrize("page", ["audit", "calls"])
def test_wide_tables_fit_a_desktop_and_a_phone(live_server, browser, cast, page):
    from selenium.webdriver.common.by import By

    _long_rows(cast)
    driver = browser()
    _sign_in(driver, live_server.url, cast.alice.email)
    url = f"{live_server.url}/w/acme/{page}/"

    # Desktop: the table wraps its long values and stays inside its card, nothing scrolls.
    _viewport(driver, 1400, 900)
    driver.get(url)
    assert len(driver.find_elements(By.CSS_SELECTOR, "main tbody tr")) == 3
    width = driver.execute_script(PAGE_WIDTH)
    assert width["scroll"] <= width["inner"] and width["scroll"] <= width["client"], width
    tables = driver.execute_script(TABLES)
    assert tables and all(t["wrapped"] and t["inside"] and not t["scrolls"] for t in tables), tables
    driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"portal-{page}-1400.png"))

    # Phone: the page itself never scrolls sideways; a table that cannot fit scrolls in its box.
    _viewport(driver, 375, 800)
    driver.get(url)
    width = driver.execute_script(PAGE_WIDTH)
    assert width["inner"] == 375
    assert width["scroll"] <= width["inner"] and width["scroll"] <= width["client"], width
    tables = driver.execute_script(TABLES)
    assert tables and all(t["wrapped"] and t["inside"] for t in tables), tables
    driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"portal-{page}-375.png"))
    _viewport(driver, 375, 2400)  # (most of) the page, for whoever looks at the screenshots
    driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"portal-{page}-375-full.png"))


@pytest.mark.parametrize("page", ["", "members/", "tokens/", "security/", "connect/"])
def test_other_workspace_pages_fit_a_phone(live_server, browser, cast, page):
    driver = browser()
    _sign_in(driver, live_server.url, cast.alice.email)
    _viewport(driver, 375, 800)
    driver.get(f"{live_server.url}/w/acme/{page}")
    width = driver.execute_script(PAGE_WIDTH)
    assert width["scroll"] <= width["inner"] and width["scroll"] <= width["client"], (page, width)


# --- Hosted servers: the Hosted tab and the deploy console ---------------------------


def test_owner_deploys_a_hosted_server_from_the_tab_and_sees_it_running(live_server, browser, cast, notes):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from apps.hosting.models import AllowedImage, Instance

    AllowedImage.objects.create(
        slug="keyed",
        name="Keyed notes",
        image="local/process",
        mcp_command="python -m apps.hosting.servers.notes --require NOTES_API_KEY",
        required_env_vars=[{"key": "NOTES_API_KEY", "label": "API key", "type": "password", "required": True}],
    )
    alice = browser()
    _sign_in(alice, live_server.url, cast.alice.email)
    alice.get(f"{live_server.url}/w/acme/")
    alice.find_element(By.LINK_TEXT, "Hosted").click()
    WebDriverWait(alice, 15).until(lambda d: d.find_elements(By.ID, "catalog"))
    assert "0 of 3 running" in alice.find_element(By.ID, "plan-usage").text
    assert "Not isolated." in alice.find_element(By.ID, "not-isolated").text

    # A server that needs a credential: Deploy waits until it is given (spaces do not count).
    keyed = alice.find_element(By.ID, "image-keyed")
    deploy_keyed = keyed.find_element(By.XPATH, ".//button[normalize-space()='Deploy']")
    key = keyed.find_element(By.CSS_SELECTOR, "input[type=password]")
    assert not deploy_keyed.is_enabled()
    assert keyed.find_element(By.CSS_SELECTOR, "[data-fill-hint]").is_displayed()
    key.send_keys("   ")
    assert not deploy_keyed.is_enabled()
    key.send_keys("k3y")
    assert deploy_keyed.is_enabled()
    assert not keyed.find_element(By.CSS_SELECTOR, "[data-fill-hint]").is_displayed()

    # notes needs nothing: its Deploy is enabled from the start.
    notes = alice.find_element(By.ID, "image-notes")
    _submit(alice, notes.find_element(By.XPATH, ".//button[normalize-space()='Deploy']"))
    instance = Instance.objects.get(workspace=cast.acme)
    assert (instance.status, instance.healthy) == (Instance.Status.RUNNING, True), instance.error
    assert alice.current_url == f"{live_server.url}/w/acme/hosted/{instance.pk}/"
    assert f"running as {instance.server_slug}" in _messages(alice)

    # live_server speaks no WebSocket: the console says it is closed, and the page as loaded
    # (status, outcome, last lines) stays.
    state = alice.find_element(By.CSS_SELECTOR, "[data-console-state]")
    WebDriverWait(alice, 15).until(lambda d: state.text.startswith("Closed"))
    assert "live updates are not available here" in state.text
    assert alice.find_element(By.CSS_SELECTOR, "[data-console-status]").text == "Running"
    outcome = alice.find_element(By.CSS_SELECTOR, "[data-outcome='healthy']")
    assert outcome.is_displayed()
    assert f"RUNNING + HEALTHY: its tools are in the gateway's tools/list as {instance.tool_prefix}tool" in outcome.text
    assert not alice.find_element(By.CSS_SELECTOR, "[data-outcome='failed']").is_displayed()
    log = alice.find_element(By.CSS_SELECTOR, "pre[role=log]")
    assert log.get_attribute("aria-live") == "polite" and log.text.strip()
    alice.save_screenshot(str(Path(tempfile.gettempdir()) / "portal-hosted-instance.png"))

    alice.find_element(By.LINK_TEXT, "Hosted").click()
    row = WebDriverWait(alice, 15).until(lambda d: d.find_element(By.ID, f"instance-{instance.pk}")).text
    assert instance.server_slug in row and "Running" in row and "healthy" in row
    assert "1 of 3 running" in alice.find_element(By.ID, "plan-usage").text
    alice.save_screenshot(str(Path(tempfile.gettempdir()) / "portal-hosted.png"))


# A WebSocket the test drives: console.js's side of the protocol, without a second server.
FAKE_WEBSOCKET = """
window.__sockets = [];
window.WebSocket = class {
  constructor(url) { this.url = url; this.listeners = {}; this.closedWith = null; window.__sockets.push(this); }
  addEventListener(type, listener) { (this.listeners[type] = this.listeners[type] || []).push(listener); }
  fire(type, event) { for (const listener of this.listeners[type] || []) listener(event); }
  open() { this.fire("open", {}); }
  emit(message) { this.fire("message", { data: JSON.stringify(message) }); }
  close(code) { this.closedWith = code === undefined ? 1005 : code; this.fire("close", { code: this.closedWith }); }
};
"""


@pytest.mark.parametrize("ending", ["healthy", "failed"])
def test_the_console_follows_a_deploy_until_it_settles(live_server, browser, cast, notes, ending):
    from selenium.webdriver.common.by import By

    from apps.hosting.models import Instance

    instance = Instance.objects.create(
        workspace=cast.acme, image=notes, status=Instance.Status.STARTING, created_by=cast.alice
    )
    alice = browser()
    _sign_in(alice, live_server.url, cast.alice.email)
    alice.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_WEBSOCKET})
    alice.get(f"{live_server.url}/w/acme/hosted/{instance.pk}/")
    state = alice.find_element(By.CSS_SELECTOR, "[data-console-state]")
    pane = alice.find_element(By.CSS_SELECTOR, "pre[role=log]")
    assert alice.execute_script("return window.__sockets[0].url") == (
        f"{live_server.url.replace('http', 'ws', 1)}/ws/w/acme/instances/{instance.pk}/console/"
    )
    assert state.text == "Connecting…"

    def send(message: dict | None = None) -> None:
        alice.execute_script("const s = window.__sockets[0]; arguments[0] ? s.emit(arguments[0]) : s.open();", message)

    send()
    assert state.text.startswith("Connected")
    status = {"status_label": "Starting", "status": "starting", "healthy": False, "settled": False, "error": ""}
    send({"kind": "snapshot", **status, "lines": ["bridge: starting notes"], "cursor": 20})
    send({"kind": "log", "lines": ["an old line"], "cursor": 20})  # at the snapshot's cursor: already shown
    send({"kind": "log", "lines": ["bridge: ready on /mcp"], "cursor": 40})
    assert pane.text == "bridge: starting notes\nbridge: ready on /mcp"
    assert alice.find_element(By.CSS_SELECTOR, "[data-outcome='starting']").is_displayed()
    if ending == "healthy":
        send({"kind": "status", **status, "status": "running", "status_label": "Running", "healthy": True})
        shown = alice.find_element(By.CSS_SELECTOR, "[data-outcome='healthy']")
        assert f"RUNNING + HEALTHY: its tools are in the gateway's tools/list as notes-{instance.pk}_tool" in shown.text
        assert alice.find_element(By.CSS_SELECTOR, "[data-console-status]").text == "Running"
        assert not alice.find_element(By.CSS_SELECTOR, "[data-console-error]").is_displayed()
    else:
        error = "The server exited before it was ready.\nnotes: NOTES_API_KEY is not set"
        send(
            {"kind": "status", **status, "status": "failed", "status_label": "Failed", "settled": True, "error": error}
        )
        assert alice.find_element(By.CSS_SELECTOR, "[data-outcome='failed']").is_displayed()
        assert alice.find_element(By.CSS_SELECTOR, "[data-console-error] pre").text == error
        assert "failed" in alice.find_element(By.CSS_SELECTOR, "[data-console-status]").get_attribute("class")
    assert not alice.find_element(By.CSS_SELECTOR, "[data-outcome='starting']").is_displayed()
    # Nothing more will come: the console closed itself, and offers the page's new actions.
    assert alice.execute_script("return window.__sockets[0].closedWith") == 1000
    assert state.text.startswith("Closed") and "Reload for its current actions" in state.text
    assert alice.execute_script("return window.__sockets.length") == 1  # and does not reconnect


def test_the_hosted_pages_fit_a_phone(live_server, browser, cast, notes):
    from apps.hosting.models import Instance

    instance = Instance.objects.create(
        workspace=cast.acme,
        image=notes,
        status=Instance.Status.FAILED,
        error="The server exited before it was ready.\n" + "a-very-long-log-line-without-any-spaces-" * 8,
        created_by=cast.carol,
    )
    driver = browser()
    _sign_in(driver, live_server.url, cast.alice.email)
    _viewport(driver, 375, 800)
    for page in ("hosted/", f"hosted/{instance.pk}/"):
        driver.get(f"{live_server.url}/w/acme/{page}")
        width = driver.execute_script(PAGE_WIDTH)
        assert width["scroll"] <= width["inner"] and width["scroll"] <= width["client"], (page, width)
        tables = driver.execute_script(TABLES)
        assert all(t["wrapped"] and t["inside"] for t in tables), (page, tables)
        _viewport(driver, 375, 2400)
        driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"portal-{page.replace('/', '-')}375.png"))
        _viewport(driver, 375, 800)


def test_a_deploy_streams_over_a_real_websocket_then_its_tools_answer_and_it_terminates(
    transactional_db, browser, cast, gateway, notes
):
    """The whole path under uvicorn (HTTP and WebSockets, as production serves them): the
    Owner deploys from the Hosted tab, the instance page's console connects, follows it to
    RUNNING + HEALTHY and closes itself; a Member's token calls its tool through the gateway
    with the SDK client; Terminate stops it."""
    import asyncio
    import os
    import signal

    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from apps.hosting.models import Instance
    from apps.tokens.services import token_create

    base = gateway()
    alice = browser()
    _sign_in(alice, base, cast.alice.email)
    alice.get(f"{base}/w/acme/hosted/")
    notes = alice.find_element(By.ID, "image-notes")
    _submit(alice, notes.find_element(By.XPATH, ".//button[normalize-space()='Deploy']"))
    instance = Instance.objects.select_related("image").get(workspace=cast.acme)
    try:
        assert (instance.status, instance.healthy) == (Instance.Status.RUNNING, True), instance.error
        assert alice.current_url == f"{base}/w/acme/hosted/{instance.pk}/"
        state = alice.find_element(By.CSS_SELECTOR, "[data-console-state]")
        # Connected, got the snapshot (running and healthy), closed itself: the live path.
        WebDriverWait(alice, 15).until(lambda d: state.text.startswith("Closed: it runs and is healthy"))
        assert alice.find_element(By.CSS_SELECTOR, "[data-outcome='healthy']").is_displayed()
        assert "bridge: ready" in alice.find_element(By.CSS_SELECTOR, "pre[role=log]").text

        token = token_create(access=cast.access(cast.alice), member=cast.carol).raw
        tool = f"{instance.tool_prefix}add_note"

        async def call():
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            async with http, Client(streamable_http_client(f"{base}/api/gw/acme", http_client=http)) as client:
                return await client.call_tool(tool, {"text": "from the browser test"})

        assert asyncio.run(call()).content[0].text == "note 1 saved"

        alice.find_element(By.LINK_TEXT, "Terminate…").click()
        WebDriverWait(alice, 15).until(lambda d: "/terminate/" in d.current_url)
        _submit(alice, alice.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
        instance.refresh_from_db()
        assert instance.status == Instance.Status.STOPPED
    finally:  # the bridge runs in its own session: never leave it behind a failed assertion
        instance.refresh_from_db()
        if instance.runtime_id and instance.status != Instance.Status.STOPPED:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(instance.runtime_id), signal.SIGKILL)
