"""REST API for gateway tokens: own vs everybody's, and the raw secret shown exactly once."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.tokens.models import GatewayToken
from apps.tokens.selectors import token_verify
from apps.tokens.services import token_create


def url(name: str, **kwargs) -> str:
    return reverse(f"api:{name}", kwargs=kwargs)


@pytest.fixture
def tokens(cast):
    """One token each for bob and carol, and a workspace token, in acme; one for dave in globex."""
    return {
        "bob": token_create(access=cast.access(cast.bob), member=cast.bob, name="bob laptop").token,
        "carol": token_create(access=cast.access(cast.carol), member=cast.carol, name="carol laptop").token,
        "workspace": token_create(access=cast.access(cast.alice), member=None, kind="workspace", name="ci").token,
        "dave": token_create(access=cast.access(cast.dave, cast.globex), member=cast.dave).token,
    }


LIST = url("token-list", slug="acme")


def created_events(workspace) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(workspace=workspace, action=Action.TOKEN_CREATED))


def test_anonymous_callers_get_401(cast, tokens, client_for):
    anonymous = client_for()
    for response in (
        anonymous.get(LIST),
        anonymous.post(LIST, {"name": "x"}),
        anonymous.post(url("token-revoke", slug="acme", pk=tokens["carol"].pk)),
    ):
        assert response.status_code == 401
        assert response.json() == {"error": "Authentication credentials were not provided."}
    assert GatewayToken.objects.get(pk=tokens["carol"].pk).revoked_at is None


def test_an_outsider_gets_404_and_changes_nothing(cast, tokens, client_for):
    dave = client_for(cast.dave)
    before = GatewayToken.objects.count()
    for response in (
        dave.get(LIST),
        dave.post(LIST, {"name": "sneaky"}),
        dave.post(LIST, {"kind": "workspace"}),
        dave.post(url("token-revoke", slug="acme", pk=tokens["carol"].pk)),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "Not found."}
    assert GatewayToken.objects.count() == before
    assert GatewayToken.objects.get(pk=tokens["carol"].pk).revoked_at is None


def test_another_workspaces_token_is_not_found_through_my_workspace(cast, tokens, client_for):
    response = client_for(cast.alice).post(url("token-revoke", slug="acme", pk=tokens["dave"].pk))
    assert response.status_code == 404
    assert GatewayToken.objects.get(pk=tokens["dave"].pk).revoked_at is None


def test_a_member_lists_only_their_own_tokens(cast, tokens, client_for):
    response = client_for(cast.carol).get(LIST)
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["results"]] == [tokens["carol"].pk]


def test_a_token_manager_lists_every_token_of_the_workspace(cast, tokens, client_for):
    response = client_for(cast.bob).get(LIST)
    assert {t["id"] for t in response.json()["results"]} == {
        tokens["bob"].pk,
        tokens["carol"].pk,
        tokens["workspace"].pk,
    }
    workspace_token = next(t for t in response.json()["results"] if t["kind"] == "workspace")
    assert (workspace_token["member"], workspace_token["created_by"], workspace_token["status"]) == (
        None,
        "alice@example.com",
        "active",
    )


def test_the_raw_token_appears_once_in_the_create_response_and_never_again(cast, client_for):
    carol = client_for(cast.carol)
    response = carol.post(LIST, {"name": "cursor", "expires_days": 30}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    raw = body["token"]
    assert re.fullmatch(r"mng_[0-9a-f]{48}", raw)
    assert raw.startswith(body["prefix"])
    assert (body["member"], body["kind"], body["name"]) == ("carol@example.com", "member", "cursor")
    assert token_verify(raw).pk == body["id"]
    digest = GatewayToken.objects.get(pk=body["id"]).digest
    assert digest not in response.content.decode()
    assert "digest" not in body

    listing = carol.get(LIST).content.decode()
    assert raw not in listing and digest not in listing and '"token"' not in listing
    (event,) = created_events(cast.acme)
    assert event.actor == cast.carol
    assert raw not in json.dumps(event.metadata) and digest not in json.dumps(event.metadata)


def test_a_member_may_not_issue_for_someone_else_or_for_the_workspace(cast, client_for):
    carol = client_for(cast.carol)
    for body in (
        {"member_email": "bob@example.com"},
        {"kind": "workspace"},
        # Not a member at all: the same refusal, so members cannot probe who belongs.
        {"member_email": "nobody@example.com"},
    ):
        response = carol.post(LIST, body, format="json")
        assert response.status_code == 403, body
        assert response.json() == {"error": "Your role in this workspace does not allow this (tokens.manage)."}
    assert not GatewayToken.objects.exists()
    assert created_events(cast.acme) == []


def test_a_token_manager_issues_for_a_member_and_for_the_workspace(cast, client_for):
    bob = client_for(cast.bob)
    for_carol = bob.post(LIST, {"member_email": "Carol@example.com", "name": "for carol"}, format="json")
    assert for_carol.status_code == 201
    assert GatewayToken.objects.get(pk=for_carol.json()["id"]).user == cast.carol
    system = bob.post(LIST, {"kind": "workspace", "name": "ci"}, format="json")
    assert system.status_code == 201
    assert system.json()["member"] is None
    assert [(e.actor, e.metadata["member"]) for e in created_events(cast.acme)] == [
        (cast.bob, None),
        (cast.bob, "carol@example.com"),
    ]


def test_issuing_for_a_non_member_says_so_to_a_manager(cast, client_for):
    response = client_for(cast.bob).post(LIST, {"member_email": "dave@example.com"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "dave@example.com is not a member of acme."}


def test_bad_input_is_explained(cast, client_for):
    carol = client_for(cast.carol)
    expiry = carol.post(LIST, {"expires_days": 0}, format="json")
    assert (expiry.status_code, expiry.json()) == (400, {"error": "Expiry must be between 1 and 3650 days."})
    mixed = client_for(cast.bob).post(LIST, {"kind": "workspace", "member_email": "carol@example.com"}, format="json")
    assert mixed.status_code == 400
    assert mixed.json()["error"] == "member_email: A workspace token acts as no member; leave member_email out."
    kind = carol.post(LIST, {"kind": "robot"}, format="json")
    assert (kind.status_code, kind.json()["error"]) == (400, 'kind: "robot" is not a valid choice.')
    assert not GatewayToken.objects.exists()


def test_a_member_revokes_their_own_token_but_not_anothers(cast, tokens, client_for):
    carol = client_for(cast.carol)
    refused = carol.post(url("token-revoke", slug="acme", pk=tokens["bob"].pk))
    assert refused.status_code == 403
    assert GatewayToken.objects.get(pk=tokens["bob"].pk).revoked_at is None

    response = carol.post(url("token-revoke", slug="acme", pk=tokens["carol"].pk))
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    (event,) = AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_REVOKED)
    assert (event.actor, event.target_id) == (cast.carol, str(tokens["carol"].pk))


def test_a_token_manager_revokes_anyones_token_once(cast, tokens, client_for):
    bob = client_for(cast.bob)
    path = url("token-revoke", slug="acme", pk=tokens["carol"].pk)
    assert bob.post(path).status_code == 200
    assert GatewayToken.objects.get(pk=tokens["carol"].pk).revoked_by == cast.bob
    # Revoking again is harmless and records nothing new.
    assert bob.post(path).json()["status"] == "revoked"
    assert AuditEvent.objects.filter(workspace=cast.acme, action=Action.TOKEN_REVOKED).count() == 1
