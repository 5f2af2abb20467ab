"""allauth's pages (sign-in, password reset, MFA) render inside the portal's layout."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse


def test_sign_in_and_password_reset_use_our_layout(db):
    client = Client()
    for name in ("account_login", "account_reset_password"):
        html = client.get(reverse(name)).content.decode()
        assert "/static/portal.css" in html, name
        assert 'class="card narrow allauth"' in html, name
        assert "Sign In" in html or "Password Reset" in html, name


def test_security_pages_use_our_layout_with_account_tabs(cast, signed_in):
    html = signed_in(cast.alice).get(reverse("mfa_index")).content.decode()
    assert "/static/portal.css" in html
    assert reverse("portal:api-keys") in html and reverse("account_change_password") in html
    assert "alice@example.com" in html  # the signed-in header


def test_sign_out_is_a_post_form_in_the_header(cast, signed_in):
    client = signed_in(cast.alice)
    html = client.get(reverse("portal:home")).content.decode()
    assert f'method="post" action="{reverse("account_logout")}"' in html
    client.post(reverse("account_logout"))
    assert client.get(reverse("portal:home")).status_code == 302


def test_every_allauth_page_we_link_renders_in_our_layout(cast, signed_in):
    anonymous = Client()
    for name in ("account_signup", "account_reset_password_done"):
        response = anonymous.get(reverse(name))
        assert response.status_code == 200, name
        assert "/static/portal.css" in response.content.decode(), name
    alice = signed_in(cast.alice)
    for name in ("account_email", "account_change_password", "account_logout", "mfa_index", "mfa_activate_totp"):
        response = alice.get(reverse(name), follow=True)
        assert response.status_code == 200, name
        assert "/static/portal.css" in response.content.decode(), name
