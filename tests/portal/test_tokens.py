"""Gateway tokens in the portal: the raw token is shown once (after a redirect, so a reload
creates nothing), digests never; who sees and revokes what, and revoking asks first."""

from __future__ import annotations

import re

from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_verify
from apps.tokens.services import token_create
from tests.factories import MembershipFactory

RAW_TOKEN = re.compile(r"mng_[0-9a-f]{48}")


def _tokens_url() -> str:
    return reverse("portal:tokens", args=["acme"])


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_raw_token_is_shown_once_and_never_again(cast, signed_in):
    client = signed_in(cast.carol)
    created = client.post(_tokens_url(), {"name": "Claude on laptop", "expires_days": "30"})
    # Post/Redirect/Get: reloading the page that follows cannot post the form again.
    assert created.status_code == 302 and created["Location"] == _tokens_url()
    assert "no-store" in created["Cache-Control"]
    assert not RAW_TOKEN.search(created.content.decode())
    # Until it is shown, the session holds it encrypted only.
    assert not RAW_TOKEN.search(str(dict(client.session)))
    shown = client.get(created["Location"])
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]  # the page with the raw token: no cache may keep it
    html = shown.content.decode()
    (raw,) = set(RAW_TOKEN.findall(html))
    token = token_verify(raw)
    assert token is not None and token.user == cast.carol and token.name == "Claude on laptop"
    assert token.expires_at is not None
    assert "will not be shown again" in html
    assert f"{token.prefix}…" in html
    assert token.digest not in html

    listed = client.get(_tokens_url())  # the reload
    listed_html = listed.content.decode()
    assert raw not in listed_html and not RAW_TOKEN.search(listed_html)
    assert GatewayToken.objects.filter(workspace=cast.acme).count() == 1
    assert token.digest not in listed_html
    assert f"{token.prefix}…" in listed_html and "Claude on laptop" in listed_html
    # Nor does it linger in the session or in a message for the next page.
    assert raw not in str(dict(client.session))
    assert not RAW_TOKEN.search(client.get(reverse("portal:workspace", args=["acme"])).content.decode())


def test_reloading_after_creating_a_token_creates_no_second_one(cast, signed_in):
    client = signed_in(cast.carol)
    first = client.post(_tokens_url(), {"name": "laptop"}, follow=True)
    assert first.redirect_chain == [(_tokens_url(), 302)]
    assert len(set(RAW_TOKEN.findall(first.content.decode()))) == 1
    for _ in range(2):  # what a browser's reload does on the page after the redirect
        again = client.get(_tokens_url())
        assert not RAW_TOKEN.search(again.content.decode())
    assert GatewayToken.objects.filter(workspace=cast.acme, user=cast.carol).count() == 1


def test_a_new_token_is_shown_in_its_own_workspace_only(cast, signed_in):
    MembershipFactory(workspace=cast.globex, user=cast.carol)
    client = signed_in(cast.carol)
    client.post(_tokens_url(), {"name": "laptop"})
    assert not RAW_TOKEN.search(client.get(reverse("portal:tokens", args=["globex"])).content.decode())
    (raw,) = RAW_TOKEN.findall(client.get(_tokens_url()).content.decode())
    assert token_verify(raw).workspace == cast.acme


def test_a_head_request_does_not_use_up_the_new_token(cast, signed_in):
    client = signed_in(cast.carol)
    client.post(_tokens_url(), {"name": "laptop"})
    assert client.head(_tokens_url()).status_code == 200
    assert len(RAW_TOKEN.findall(client.get(_tokens_url()).content.decode())) == 1


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
    assert for_carol.status_code == 302
    ci = client.post(_tokens_url(), {"name": "ci", "holder": "workspace"})
    assert ci.status_code == 302
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


def _revoke_url(token: GatewayToken) -> str:
    return reverse("portal:token-revoke", args=["acme", token.pk])


CONFIRM = {"confirm": "yes"}


def test_revoking_a_token_asks_first(cast, signed_in, acme_objects):
    token = acme_objects.carol_token.token
    client = signed_in(cast.carol)
    page = client.get(_tokens_url()).content.decode()
    # The list offers a link to the confirmation, not a one-click form.
    assert f'href="{_revoke_url(token)}"' in page
    assert f'action="{_revoke_url(token)}"' not in page

    asked = client.get(_revoke_url(token))
    assert asked.status_code == 200
    html = asked.content.decode()
    assert f"Revoke the token {token.prefix}…?" in html
    assert "carol laptop" in html and "carol@example.com" in html
    assert 'name="confirm" value="yes"' in html and f'href="{_tokens_url()}"' in html  # confirm, or Cancel

    unconfirmed = client.post(_revoke_url(token))
    assert unconfirmed.status_code == 200
    assert f"Nothing was changed: this needs confirming. Press “Revoke {token.prefix}…” below, or Cancel." in (
        _messages(unconfirmed)
    )
    assert token_verify(acme_objects.carol_token.raw) is not None
    assert not AuditEvent.objects.filter(action=Action.TOKEN_REVOKED).exists()

    revoked = client.post(_revoke_url(token), CONFIRM, follow=True)
    assert f"Token {token.prefix}… revoked." in _messages(revoked)
    assert token_verify(acme_objects.carol_token.raw) is None
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED, actor=cast.carol).count() == 1


def test_member_revokes_their_own_token_but_cannot_reach_others(cast, signed_in, acme_objects):
    client = signed_in(cast.carol)
    others = token_create(access=cast.access(cast.bob), member=cast.bob).token
    for token in (others, acme_objects.workspace_token.token):
        assert client.get(_revoke_url(token)).status_code == 404
        assert client.post(_revoke_url(token), CONFIRM).status_code == 404
    own = acme_objects.carol_token.token
    response = client.post(_revoke_url(own), CONFIRM, follow=True)
    assert f"Token {own.prefix}… revoked." in _messages(response)
    own.refresh_from_db()
    others.refresh_from_db()
    assert own.revoked_at is not None and others.revoked_at is None
    assert token_verify(acme_objects.carol_token.raw) is None
    for again in (client.post(_revoke_url(own), CONFIRM, follow=True), client.get(_revoke_url(own), follow=True)):
        assert f"Token {own.prefix}… was already revoked." in _messages(again)


def test_owner_revokes_anyones_token(cast, signed_in, acme_objects):
    response = signed_in(cast.alice).post(_revoke_url(acme_objects.carol_token.token), CONFIRM)
    assert response.status_code == 302
    assert token_verify(acme_objects.carol_token.raw) is None
    event = AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_REVOKED).get()
    assert event.actor == cast.alice


def test_token_list_is_paged_with_a_fixed_number_of_queries(cast, signed_in, django_assert_max_num_queries):
    for n in range(60):
        token_create(access=cast.access(cast.alice), member=cast.carol if n % 2 else cast.bob, name=f"t{n}")
    client = signed_in(cast.alice)
    with django_assert_max_num_queries(9):  # 7th, 8th: the navigation's counts; 9th: "SSO required"
        first = client.get(_tokens_url())
    assert len(first.context["page"].rows) == 50 and first.context["page"].has_next
    second = client.get(_tokens_url() + "?page=2")
    assert len(second.context["page"].rows) == 10 and not second.context["page"].has_next
    names = {t.name for t in first.context["page"].rows} | {t.name for t in second.context["page"].rows}
    assert len(names) == 60
