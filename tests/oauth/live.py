"""The real server for OAuth tests: ``mcpnest.asgi`` under uvicorn on 127.0.0.1, with
``MCPNEST_PUBLIC_URL`` set to its own address (so its issuer, resource URLs and endpoints
are the ones clients reach), on the running test's database; and the pieces a desktop MCP
client brings to a sign-in: a loopback callback server and a person in Chromium."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

import httpx2

from tests.factories import PASSWORD
from tests.gateway.server import free_port, server_command, serving, subprocess_database_url
from tests.local_http import LocalServer


@contextmanager
def live_server(log_dir: Path, **env: str) -> Iterator[str]:
    """Serve MCPNest on a free port whose URL is also its public URL; yields that URL.

    Start it after the test's setup: the gateway caches workspace configuration from its
    first request, and without Redis it hears of no later change."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mcpnest.settings.test",
        "DATABASE_URL": subprocess_database_url(),
        "MCPNEST_PUBLIC_URL": base,
        **env,
    }
    with serving(server_command(port), port=port, env=environment, log=log_dir / f"server-{port}.log"):
        yield base


def server_log(log_dir: Path, chars: int = 4000) -> str:
    """The end of what the live server logged, for a failure message."""
    return "\n".join(path.read_text(errors="replace")[-chars:] for path in sorted(log_dir.glob("server-*.log")))


class Callback(LocalServer):
    """A desktop client's loopback redirect target: records each ``/callback`` query."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        self.arrived = threading.Event()

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"

    def respond(self, method, url: SplitResult, headers, body):
        if url.path != "/callback":
            return 404, {"Content-Type": "text/plain"}, b"not here"
        self.queries.append({name: values[0] for name, values in parse_qs(url.query).items()})
        self.arrived.set()
        return 200, {"Content-Type": "text/plain"}, b"Signed in; you can close this window."

    def wait(self, timeout: float = 30.0) -> dict[str, str]:
        assert self.arrived.wait(timeout), "the browser never reached the loopback callback"
        return self.queries[-1]


def sign_in_and_allow(driver, authorize_url: str, *, email: str, callback: str) -> None:
    """What the person does: open the authorization URL, sign in, read the consent page and
    click Allow; returns once the browser has been sent to ``callback``."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,))
    driver.get(authorize_url)
    wait.until(lambda d: "/accounts/login/" in d.current_url)  # not signed in yet: allauth's page
    driver.find_element(By.NAME, "login").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait.until(lambda d: d.find_element(By.ID, "authorizationForm"))  # back on the consent page
    driver.find_element(By.CSS_SELECTOR, "#authorizationForm button[name=allow]").click()
    wait.until(lambda d: d.current_url.startswith(callback))


class _HiddenInputs(HTMLParser):
    """The hidden fields of the consent page's form, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") == "hidden" and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value") or ""


def obtain_over_http(base: str, *, email: str, slug: str) -> tuple[str, str]:
    """A token for ``slug``'s gateway from the running server, over plain HTTP as a client
    and a person's browser would get it: register, sign in, consent, exchange. Returns
    (access token, client id)."""
    redirect_uri = "http://127.0.0.1:9/callback"  # never followed: the code is read off the redirect
    with httpx2.Client(base_url=base, follow_redirects=False, timeout=30) as http:
        registered = http.post(
            "/oauth/register/",
            json={"client_name": "conformance", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201, (registered.status_code, registered.text[:300])
        client_id = registered.json()["client_id"]

        page = http.get("/accounts/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf, "no CSRF token on the sign-in page"
        signed_in = http.post(
            "/accounts/login/", data={"login": email, "password": PASSWORD, "csrfmiddlewaretoken": csrf.group(1)}
        )
        assert signed_in.status_code == 302, (signed_in.status_code, signed_in.text[:300])

        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(8)
        consent = http.get(
            "/oauth/authorize/",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": "mcp",
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": f"{base}/api/gw/{slug}",
            },
        )
        assert consent.status_code == 200, (consent.status_code, consent.text[:300])
        form = _HiddenInputs()
        form.feed(consent.text)
        allowed = http.post("/oauth/authorize/", data={**form.fields, "allow": "Authorize"})
        assert allowed.status_code == 302, (allowed.status_code, allowed.text[:300])
        query = parse_qs(urlsplit(allowed.headers["location"]).query)
        assert query["state"] == [state] and query["iss"] == [base]

        tokens = http.post(
            "/oauth/token/",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200, (tokens.status_code, tokens.text[:300])
        return tokens.json()["access_token"], client_id
