"""The SCIM token: only its digest is kept, only a valid one opens /scim/v2/, and issuing
and revoking it are on the audit trail."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.events import Action
from apps.audit.models import AuditEvent
from apps.core.errors import RuleViolation
from apps.scim.models import ScimToken
from apps.scim.services import scim_token_create, scim_token_revoke
from tests.scim.conftest import Scim

pytestmark = pytest.mark.django_db

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def assert_refused(response):
    assert response.status_code == 401
    assert response["Content-Type"] == "application/scim+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="scim"'
    assert response.json()["schemas"] == [ERROR]
    assert response.json()["status"] == "401"


@pytest.mark.parametrize("path", ["/Users", "/Groups", "/ServiceProviderConfig", "/Schemas", "/ResourceTypes", "/Bulk"])
def test_no_token_no_entry(cast, path):
    assert_refused(Scim(None).get(path))


def test_wrong_tokens_are_refused(cast, acme_token):
    assert_refused(Scim("mns_" + "0" * 48).get("/Users"))
    assert_refused(Scim(acme_token[:-1] + "x").get("/Users"))
    assert_refused(Scim("not-a-token").get("/Users"))
    # A gateway token is not a SCIM token.
    assert_refused(Scim("mng_" + acme_token[4:]).get("/Users"))
    client = Scim(None)
    client.headers = {"Authorization": f"Basic {acme_token}"}
    assert_refused(client.get("/Users"))


def test_a_revoked_token_is_refused_at_once(cast, acme_token):
    idp = Scim(acme_token)
    assert idp.get("/Users").status_code == 200
    token = ScimToken.objects.get(workspace=cast.acme)
    assert scim_token_revoke(access=cast.access(cast.alice), token=token) is True
    assert_refused(idp.get("/Users"))
    assert scim_token_revoke(access=cast.access(cast.alice), token=token) is False
    event = AuditEvent.objects.get(action=Action.SCIM_TOKEN_REVOKED)
    assert (event.actor, event.target_repr) == (cast.alice, token.prefix)


def test_a_deleted_workspaces_token_is_refused(cast, acme_token):
    cast.acme.deleted_at = timezone.now()
    cast.acme.save(update_fields=["deleted_at"])
    assert_refused(Scim(acme_token).get("/Users"))


def test_only_the_digest_is_stored_and_use_is_recorded(cast, acme_token):
    token = ScimToken.objects.get(workspace=cast.acme)
    assert token.digest == hashlib.sha256(acme_token.encode()).hexdigest()
    assert token.prefix == acme_token[:12]
    assert acme_token not in str(ScimToken.objects.values().get(pk=token.pk))
    assert token.last_used_at is None
    Scim(acme_token).get("/Users")
    token.refresh_from_db()
    assert token.last_used_at is not None
    event = AuditEvent.objects.get(action=Action.SCIM_TOKEN_CREATED)
    assert event.workspace == cast.acme and acme_token not in str(event.metadata)


def test_only_owners_issue_and_revoke(cast):
    with pytest.raises(RuleViolation):
        scim_token_create(access=cast.access(cast.bob), name="x")  # an Admin
    issued = scim_token_create(access=cast.access(cast.alice), name="Entra")
    with pytest.raises(RuleViolation):
        scim_token_revoke(access=cast.access(cast.bob), token=issued.token)
    with pytest.raises(RuleViolation):
        scim_token_revoke(access=cast.access(cast.dave, cast.globex), token=issued.token)


def test_the_command_prints_the_token_once(cast):
    out, err = StringIO(), StringIO()
    call_command("scim_token_create", "acme", "--name", "Okta", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("mns_") and len(raw) == 52
    assert raw not in err.getvalue()
    assert Scim(raw).get("/Users").status_code == 200
    token = ScimToken.objects.get(name="Okta")
    assert token.created_by is None
    call_command("scim_token_revoke", "acme", token.prefix, stdout=StringIO())
    assert_refused(Scim(raw).get("/Users"))
