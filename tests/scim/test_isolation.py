"""A workspace's IdP sees and changes only its own people and groups: globex's SCIM token
can neither read, change, deactivate nor delete carol, who belongs only to acme, nor use
acme's groups; every such attempt answers as if she did not exist."""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.tokens.models import GatewayToken
from apps.tokens.services import token_create
from apps.workspaces.models import Membership
from tests.scim.conftest import body

pytestmark = pytest.mark.django_db


def test_another_tenants_person_is_invisible(cast, globex_idp):
    carol = f"/Users/{cast.carol.pk}"
    assert globex_idp.get(carol).status_code == 404
    listed = globex_idp.get("/Users").json()
    assert [r["userName"] for r in listed["Resources"]] == ["dave@example.com"]
    found = globex_idp.get('/Users?filter=userName eq "carol@example.com"').json()
    assert found["totalResults"] == 0
    # A filter that would match everyone still stays inside the tenant.
    everyone = globex_idp.get('/Users?filter=userName co "@"').json()
    assert [r["userName"] for r in everyone["Resources"]] == ["dave@example.com"]
    searched = globex_idp.post(
        "/Users/.search",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName sw "carol"'},
    )
    assert searched.status_code == 200 and searched.json()["totalResults"] == 0


def test_another_tenants_person_cannot_be_changed_deactivated_or_deleted(cast, globex_idp):
    token_create(access=cast.access(cast.carol), member=cast.carol)
    carol = f"/Users/{cast.carol.pk}"
    before = AuditEvent.objects.count()

    responses = [
        globex_idp.patch(carol, body("entra_disable_user_string_false")),
        globex_idp.patch(carol, body("okta_deactivate_user")),
        globex_idp.put(carol, {"userName": "carol@example.com", "active": False, "name": {"givenName": "X"}}),
        globex_idp.delete(carol),
    ]

    for response in responses:
        assert response.status_code == 404
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    carol_now = User.objects.get(pk=cast.carol.pk)
    assert carol_now.is_active and carol_now.first_name == ""
    assert Membership.objects.filter(workspace=cast.acme, user=cast.carol).exists()
    assert GatewayToken.objects.active().filter(user=cast.carol).exists()
    assert AuditEvent.objects.count() == before


def test_another_tenants_person_cannot_be_put_in_a_group(cast, globex_idp):
    group = globex_idp.post("/Groups", body("okta_create_group")).json()
    added = globex_idp.patch(
        f"/Groups/{group['id']}",
        body("entra_group_add_member", f648f8d5ea4e4cd38e9c=str(cast.carol.pk)),
    )
    assert added.status_code == 400
    created = globex_idp.post("/Groups", {"displayName": "Sneaky", "members": [{"value": str(cast.carol.pk)}]})
    assert created.status_code == 400
    assert globex_idp.get(f"/Groups/{group['id']}").json()["members"] == []


def test_groups_belong_to_their_tenant(cast, acme_idp, globex_idp):
    acme_group = acme_idp.post("/Groups", body("entra_create_group")).json()
    assert globex_idp.get(f"/Groups/{acme_group['id']}").status_code == 404
    assert globex_idp.delete(f"/Groups/{acme_group['id']}").status_code == 404
    assert globex_idp.get("/Groups").json()["totalResults"] == 0
    assert globex_idp.get('/Groups?filter=displayName eq "displayName"').json()["totalResults"] == 0
    # The same name is free in another tenant.
    assert globex_idp.post("/Groups", body("entra_create_group")).status_code == 201


def test_a_person_in_both_tenants_shows_each_only_its_own_groups(cast, acme_idp, globex_idp):
    globex_idp.post("/Users", {"userName": "carol@example.com"})
    acme_group = acme_idp.post("/Groups", {"displayName": "Acme engineers"}).json()
    globex_group = globex_idp.post("/Groups", {"displayName": "Globex sales"}).json()
    member = {"Operations": [{"op": "add", "path": "members", "value": [{"value": str(cast.carol.pk)}]}]}
    acme_idp.patch(f"/Groups/{acme_group['id']}", member)
    globex_idp.patch(f"/Groups/{globex_group['id']}", member)
    assert [g["display"] for g in acme_idp.get(f"/Users/{cast.carol.pk}").json()["groups"]] == ["Acme engineers"]
    assert [g["display"] for g in globex_idp.get(f"/Users/{cast.carol.pk}").json()["groups"]] == ["Globex sales"]
