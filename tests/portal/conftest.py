"""Portal fixtures: signed-in clients for the cast, and a few acme objects to act on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.tokens.models import GatewayToken
from apps.tokens.services import IssuedToken, token_create
from apps.workspaces.models import Invitation, Membership
from apps.workspaces.services import invitation_create
from tests.gateway.server import gateway  # noqa: F401 - a fixture (the gateway under uvicorn)


@pytest.fixture
def signed_in(cast) -> Callable[[User], Client]:
    """``signed_in(cast.alice)`` → a Client with alice's session."""

    def sign_in(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


@dataclass
class AcmeObjects:
    carol_membership: Membership
    invitation: Invitation
    carol_token: IssuedToken
    workspace_token: IssuedToken


@pytest.fixture
def acme_objects(cast) -> AcmeObjects:
    """Things in acme an outsider might try to reach: a membership, an invitation, tokens."""
    invitation, _ = invitation_create(access=cast.access(cast.alice), email="erin@example.com")
    return AcmeObjects(
        carol_membership=Membership.objects.get(workspace=cast.acme, user=cast.carol),
        invitation=invitation,
        carol_token=token_create(access=cast.access(cast.carol), member=cast.carol, name="carol laptop"),
        workspace_token=token_create(
            access=cast.access(cast.alice), member=None, kind=GatewayToken.Kind.WORKSPACE, name="ci"
        ),
    )
