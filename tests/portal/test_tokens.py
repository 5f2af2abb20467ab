"""Gateway tokens in the portal: the raw token is shown once, digests never; who sees and revokes what."""

from __future__ import annotations

import re

from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create, token_verify

RAW_TOKEN = re.compile(r"mng_[0-9a-f]{48}")


def _tokens_url() -> str:
    return reverse("portal:tokens", args=["acme"])


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_raw_token_is_shown_once_and_never_again(cast, signed_in):
    client = signed_in(cast.carol)
    created = client.post(_tokens_url(), {"name": "Claude on laptop", "expires_days": "30"})
    assert created.status_code == 201
    assert "no-store" in created["Cache-Control"]
    html = created.content.decode()
    (raw,) = set(RAW_TOKEN.findall(html))
    token = token_verify(raw)
    assert token is not None and token.user == cast.carol and token.name == "Claude on laptop"
    assert token.expires_at is not None
    assert "will not be shown again" in html
    assert f"{token.prefix}…" in html
    assert token.digest not in html

    listed = client.get(_tokens_url())
    listed_html = listed.content.decode()
    assert raw not in listed_html and not RAW_TOKEN.search(listed_html)
    assert token.digest not in listed_html
    assert f"{token.prefix}…" in listed_html and "Claude on laptop" in listed_html
    # Nor does it linger in the session or in a message for the next page.
    assert raw not in str(dict(client.session))
    assert not RAW_TOKEN.search(client.get(reverse("portal:workspace", args=["acme"])).content.decode())


def test_digests_appear_on_no_page(cast, signed_in, acme_objects):
    client = signed_in(cast.alice)
    digests = list(GatewayToken.objects.values_list("digest", flat=True))
    pages = [
        reverse("portal:home"),
        reverse("portal:workspace", args=["acme"]),
        reverse("portal:members", args=["acme"]),
        _tokens_url(),
        reverse("portal:audit", args=["acme"]),
    ]
    for url in pages:
        html = client.get(url).content.decode()
        assert not RAW_TOKEN.search(html), url
        assert not any(digest in html for digest in digests), url


def test_member_issues_for_themselves_only_and_sees_only_their_tokens(cast, signed_in, acme_objects):
    client = signed_in(cast.carol)
    page = client.get(_tokens_url())
    assert "holder" not in page.context["form"].fields
    assert [t.pk for t in page.context["page"].rows] == [acme_objects.carol_token.token.pk]
    # A holder sneaked into the POST is ignored: the token is carol's.
    client.post(_tokens_url(), {"name": "x", "holder": "workspace"})
    newest = GatewayToken.objects.filter(workspace=cast.acme).latest("created_at")
    assert (newest.kind, newest.user) == (GatewayToken.Kind.MEMBER, cast.carol)


def test_admin_issues_for_a_member_and_a_workspace_token(cast, signed_in):
    client = signed_in(cast.bob)
    form = client.get(_tokens_url()).context["form"]
    holders = [value for value, _ in form.fields["holder"].choices]
    assert holders == [str(cast.alice.pk), str(cast.bob.pk), str(cast.carol.pk), "workspace"]
    for_carol = client.post(_tokens_url(), {"name": "for carol", "holder": str(cast.carol.pk)})
    assert for_carol.status_code == 201
    ci = client.post(_tokens_url(), {"name": "ci", "holder": "workspace"})
    assert ci.status_code == 201
    tokens = {t.name: t for t in GatewayToken.objects.filter(workspace=cast.acme)}
    assert (tokens["for carol"].user, tokens["for carol"].created_by) == (cast.carol, cast.bob)
    assert (tokens["ci"].kind, tokens["ci"].user) == (GatewayToken.Kind.WORKSPACE, None)
    assert AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_CREATED).count() == 2
    listed = client.get(_tokens_url()).content.decode()
    assert "Workspace token" in listed and "carol@example.com" in listed


def test_cannot_issue_for_an_outsider(cast, signed_in):
    response = signed_in(cast.alice).post(_tokens_url(), {"name": "x", "holder": str(cast.dave.pk)})
    assert response.status_code == 200
    assert "holder" in response.context["form"].errors
    assert not GatewayToken.objects.exists()


def test_bad_expiry_is_an_error_and_keeps_the_input(cast, signed_in):
    response = signed_in(cast.carol).post(_tokens_url(), {"name": "keep me", "expires_days": "0"})
    assert response.status_code == 200
    assert "expires_days" in response.context["form"].errors
    assert 'value="keep me"' in response.content.decode()
    assert not GatewayToken.objects.exists()


def test_member_revokes_their_own_token_but_cannot_reach_others(cast, signed_in, acme_objects):
    client = signed_in(cast.carol)
    others = token_create(access=cast.access(cast.bob), member=cast.bob).token
    assert client.post(reverse("portal:token-revoke", args=["acme", others.pk])).status_code == 404
    assert (
        client.post(reverse("portal:token-revoke", args=["acme", acme_objects.workspace_token.token.pk])).status_code
        == 404
    )
    own = acme_objects.carol_token.token
    response = client.post(reverse("portal:token-revoke", args=["acme", own.pk]), follow=True)
    assert f"Token {own.prefix}… revoked." in _messages(response)
    own.refresh_from_db()
    others.refresh_from_db()
    assert own.revoked_at is not None and others.revoked_at is None
    assert token_verify(acme_objects.carol_token.raw) is None
    again = client.post(reverse("portal:token-revoke", args=["acme", own.pk]), follow=True)
    assert f"Token {own.prefix}… was already revoked." in _messages(again)


def test_owner_revokes_anyones_token(cast, signed_in, acme_objects):
    response = signed_in(cast.alice).post(
        reverse("portal:token-revoke", args=["acme", acme_objects.carol_token.token.pk])
    )
    assert response.status_code == 302
    assert token_verify(acme_objects.carol_token.raw) is None
    event = AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_REVOKED).get()
    assert event.actor == cast.alice


def test_token_list_is_paged_with_a_fixed_number_of_queries(cast, signed_in, django_assert_max_num_queries):
    for n in range(60):
        token_create(access=cast.access(cast.alice), member=cast.carol if n % 2 else cast.bob, name=f"t{n}")
    client = signed_in(cast.alice)
    with django_assert_max_num_queries(6):
        first = client.get(_tokens_url())
    assert len(first.context["page"].rows) == 50 and first.context["page"].has_next
    second = client.get(_tokens_url() + "?page=2")
    assert len(second.context["page"].rows) == 10 and not second.context["page"].has_next
    names = {t.name for t in first.context["page"].rows} | {t.name for t in second.context["page"].rows}
    assert len(names) == 60
