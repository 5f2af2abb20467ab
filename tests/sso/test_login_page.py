"""The sign-in page with the project's own URLs: customers' IdPs are never listed."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_login_page_lists_no_customer_idp(oidc_connection):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert b"Acme Okta" not in response.content and b"acme-oidc" not in response.content
