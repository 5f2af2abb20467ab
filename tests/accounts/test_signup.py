"""Sign-up is closed outside development; an invitation still lets its invitee in."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from apps.workspaces.services import invitation_create, invitation_url


def _sign_up(client: Client, email: str, next_url: str = ""):
    data = {"email": email, "password1": "a-long-passphrase-42", "password2": "a-long-passphrase-42"}
    if next_url:
        data["next"] = next_url
    return client.post(reverse("account_signup") + (f"?next={next_url}" if next_url else ""), data)


def test_sign_up_is_closed_by_default_without_debug(db, settings):
    assert settings.ACCOUNT_SIGNUP_OPEN is False  # the test settings run with DEBUG off, as production does
    page = Client().get(reverse("account_signup"))
    assert "closed" in page.content.decode().lower()
    _sign_up(Client(), "stranger@example.com")
    assert not User.objects.filter(email="stranger@example.com").exists()


def test_an_invitation_opens_sign_up_for_its_invitee(cast):
    _, raw = invitation_create(access=cast.access(cast.alice), email="newcomer@example.com")
    response = _sign_up(Client(), "newcomer@example.com", invitation_url(raw))
    assert User.objects.filter(email="newcomer@example.com").exists(), response.content.decode()[:500]
    # A revoked or unknown invitation opens nothing.
    _sign_up(Client(), "other@example.com", invitation_url("inv_" + "0" * 48))
    assert not User.objects.filter(email="other@example.com").exists()


def test_sign_up_can_be_opened(db, settings):
    settings.ACCOUNT_SIGNUP_OPEN = True
    _sign_up(Client(), "open@example.com")
    assert User.objects.filter(email="open@example.com").exists()


def test_an_unconfirmed_address_cannot_sign_in(db, settings):
    from django.core import mail

    assert settings.ACCOUNT_EMAIL_VERIFICATION == "mandatory"  # production's setting, without DEBUG
    User.objects.create_user(email="unconfirmed@example.com", password="a-long-passphrase-42")
    client = Client()
    response = client.post(
        reverse("account_login"), {"login": "unconfirmed@example.com", "password": "a-long-passphrase-42"}
    )
    assert "_auth_user_id" not in client.session
    assert response.status_code == 302 and "confirm" in response["Location"]
    assert any("unconfirmed@example.com" in message.to for message in mail.outbox)


def test_signing_up_with_an_invitation_confirms_the_invited_address(cast):
    from allauth.account.models import EmailAddress

    _, raw = invitation_create(access=cast.access(cast.alice), email="joiner@example.com")
    client = Client()
    _sign_up(client, "joiner@example.com", invitation_url(raw))
    assert EmailAddress.objects.get(email="joiner@example.com").verified
    assert "_auth_user_id" in client.session  # signed in at once, no confirmation mail needed
