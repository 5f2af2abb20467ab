"""No secrets in upstream URLs: a URL with a user name and password or a credential-looking
query parameter is refused wherever a server is added or changed (the service, the portal
form, the admin, ``manage.py addserver``), with a message that points to the encrypted
headers and never repeats the secret. Also: a server's own timeout and concurrency limit."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.gateway.models import UpstreamServer
from apps.gateway.services import server_add, server_update, url_without_credentials
from tests.factories import UserFactory
from tests.gateway.server import free_port

SECRET = "s3cr3t-Value-42"
HOST = "https://mcp.example.com/mcp"

REFUSED = {
    f"https://user:{SECRET}@mcp.example.com/mcp": ("the user name and password before “@”", "Authorization: Basic …"),
    f"https://{SECRET}@mcp.example.com/mcp": ("the user name and password before “@”", "Authorization: Basic …"),
    f"{HOST}?api_key={SECRET}": ("api_key=…", "Authorization: Bearer …"),
    f"{HOST}?apikey={SECRET}": ("apikey=…", "Authorization: Bearer …"),
    f"{HOST}?API-KEY={SECRET}": ("API-KEY=…", "Authorization: Bearer …"),
    f"{HOST}?x-goog-api-key={SECRET}": ("x-goog-api-key=…", "Authorization: Bearer …"),
    f"{HOST}?key={SECRET}": ("key=…", "Authorization: Bearer …"),
    f"{HOST}?region=eu&token={SECRET}": ("token=…", "Authorization: Bearer …"),
    f"{HOST}?access_token={SECRET}": ("access_token=…", "Authorization: Bearer …"),
    f"{HOST}?client_secret={SECRET}": ("client_secret=…", "Authorization: Bearer …"),
    f"{HOST}?password={SECRET}": ("password=…", "Authorization: Bearer …"),
    f"{HOST}?passwd={SECRET}": ("passwd=…", "Authorization: Bearer …"),
    f"{HOST}?auth={SECRET}": ("auth=…", "Authorization: Bearer …"),
    f"{HOST}?sig={SECRET}": ("sig=…", "Authorization: Bearer …"),
    f"{HOST}?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}": (
        "X-Amz-Signature=… and X-Amz-Credential=…",
        "Authorization: Bearer …",
    ),
    f"{HOST}#access_token={SECRET}": ("access_token=…", "Authorization: Bearer …"),
    f"https://me:{SECRET}@mcp.example.com/mcp?token={SECRET}": (
        "the user name and password before “@” and token=…",
        "Authorization: Bearer …",
    ),
}
ALLOWED = [HOST, f"{HOST}?region=eu&version=2", f"{HOST}?token=", f"{HOST}?keyword=search&page=2"]


def _refusal(exc: ValidationError) -> str:
    (message,) = exc.message_dict["url"]
    return message


@pytest.mark.parametrize("url", REFUSED)
def test_the_service_refuses_credentials_in_a_url_without_repeating_them(cast, url):
    with pytest.raises(ValidationError) as refused:
        server_add(access=cast.access(cast.alice), slug="leaky", url=url)
    message = _refusal(refused.value)
    remove, header = REFUSED[url]
    assert message == (
        "Put credentials in the server's headers (encrypted at rest), not in its URL: "
        f"remove {remove} and add a header such as {header} (or the one the server documents, e.g. X-API-Key: …)."
    )
    assert SECRET.lower() not in message.lower()
    assert not UpstreamServer.objects.exists() and not AuditEvent.objects.filter(action__startswith="server.").exists()
    # A Member's request is refused alike.
    with pytest.raises(ValidationError):
        server_add(access=cast.access(cast.carol), slug="leaky", url=url)


@pytest.mark.parametrize("url", ALLOWED)
def test_urls_without_credentials_are_accepted(cast, url):
    server = server_add(access=cast.access(cast.carol), slug="wiki", url=url)  # a request: nothing is contacted
    assert server.url == url


def test_url_without_credentials_is_what_the_form_shows_back():
    assert url_without_credentials(f"https://me:{SECRET}@h.example/mcp?a=1&api_key={SECRET}#x") == (
        "https://h.example/mcp?a=1&api_key=#x"
    )
    assert url_without_credentials(f"{HOST}?region=eu") == f"{HOST}?region=eu"


def test_server_update_refuses_credentials_and_audits_changes(cast):
    server = server_add(access=cast.access(cast.carol), slug="wiki", url=HOST)
    # A URL saved before these checks existed may hold a secret: the audit trail gets it masked.
    UpstreamServer.objects.filter(pk=server.pk).update(url=f"{HOST}?token={SECRET}")
    server.refresh_from_db()
    access = cast.access(cast.bob)
    with pytest.raises(ValidationError) as refused:
        server_update(
            access=access, server=server, url=f"{HOST}?api_key={SECRET}", timeout_seconds=None, max_concurrency=None
        )
    assert "remove api_key=…" in _refusal(refused.value) and SECRET not in _refusal(refused.value)

    updated = server_update(access=access, server=server, url=HOST, timeout_seconds=120, max_concurrency=4)
    assert (updated.url, updated.timeout_seconds, updated.max_concurrency) == (HOST, 120, 4)
    event = AuditEvent.objects.get(action=Action.SERVER_UPDATED)
    assert event.actor == cast.bob and event.metadata == {
        "changed": {"url": [f"{HOST}?token=", HOST], "timeout_seconds": [None, 120], "max_concurrency": [None, 4]}
    }
    server_update(access=access, server=updated, url=HOST, timeout_seconds=120, max_concurrency=4)  # no change
    assert AuditEvent.objects.filter(action=Action.SERVER_UPDATED).count() == 1
    with pytest.raises(ValidationError) as out_of_range:
        server_update(access=access, server=updated, url=HOST, timeout_seconds=0, max_concurrency=4)
    assert "timeout_seconds" in out_of_range.value.message_dict


def test_the_portal_form_refuses_and_shows_the_url_without_the_secret(cast, client):
    client.force_login(cast.alice)
    response = client.post(
        reverse("portal:security-server-add", args=["acme"]),
        {"slug": "leaky", "url": f"https://me:{SECRET}@mcp.example.com/mcp?api_key={SECRET}&region=eu"},
    )
    assert response.status_code == 200
    (error,) = response.context["server_form"].errors["url"]
    assert error.startswith("Put credentials in the server's headers (encrypted at rest), not in its URL:")
    body = response.content.decode()
    assert SECRET not in body
    assert 'value="https://mcp.example.com/mcp?api_key=&amp;region=eu"' in body
    assert not UpstreamServer.objects.exists()


def test_addserver_refuses_credentials_and_takes_a_timeout_and_a_limit(cast):
    with pytest.raises(CommandError) as refused:
        call_command("addserver", "acme", "leaky", f"{HOST}?token={SECRET}")
    assert str(refused.value).startswith("url: Put credentials in the server's headers (encrypted at rest)")
    assert SECRET not in str(refused.value) and not UpstreamServer.objects.exists()

    nowhere = f"http://127.0.0.1:{free_port()}/mcp"  # added all the same, reported unreachable
    call_command("addserver", "acme", "slow", nowhere, "--timeout", "300", "--max-concurrency", "4")
    server = UpstreamServer.objects.get(slug="slow")
    assert (server.timeout_seconds, server.max_concurrency) == (300, 4)
    assert AuditEvent.objects.get(action=Action.SERVER_ADDED).metadata["timeout_seconds"] == 300
    with pytest.raises(CommandError, match="max_concurrency"):
        call_command("addserver", "acme", "zero", nowhere, "--max-concurrency", "0")


def test_the_admin_changes_url_timeout_and_limit_through_the_service(cast, client):
    root = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)
    server = server_add(access=cast.access(cast.carol), slug="wiki", url=HOST)
    change = reverse("admin:gateway_upstreamserver_change", args=[server.pk])
    client.force_login(root)
    page = client.get(change).content.decode()
    assert 'name="timeout_seconds"' in page and 'name="max_concurrency"' in page and 'name="slug"' not in page

    refused = client.post(
        change, {"url": f"{HOST}?api_key={SECRET}", "timeout_seconds": "", "max_concurrency": ""}, follow=True
    )
    assert "Put credentials in the server&#x27;s headers" in refused.content.decode()
    assert SECRET not in refused.content.decode()
    server.refresh_from_db()
    assert server.url == HOST and not AuditEvent.objects.filter(action=Action.SERVER_UPDATED).exists()

    saved = client.post(change, {"url": HOST, "timeout_seconds": "30", "max_concurrency": "8"})
    assert saved.status_code == 302
    server.refresh_from_db()
    assert (server.timeout_seconds, server.max_concurrency) == (30, 8)
    event = AuditEvent.objects.get(action=Action.SERVER_UPDATED)
    assert event.actor == root and event.metadata["changed"]["timeout_seconds"] == [None, 30]
    assert client.get(reverse("admin:gateway_upstreamserver_add")).status_code == 403
