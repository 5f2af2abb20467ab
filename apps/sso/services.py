"""Writes for single sign-on: connection changes (from the admin) and sign-ins through an IdP.

Each writes its change and its audit row in one transaction. The gateway's reload when a
connection or an SSO identity changes is not here: ``apps.sso.receivers`` moves the
workspace's epoch on every save and delete of those rows, whoever makes them (allauth
creates SocialAccounts itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from allauth.socialaccount.models import SocialApp
from django.db import IntegrityError, transaction

from apps.audit.events import Action
from apps.audit.services import audit_event_record
from apps.core import epochs
from apps.sso.models import SsoConnection
from apps.workspaces.models import Membership

if TYPE_CHECKING:
    from apps.accounts.models import User

# What the audit row says about a connection: its rules, never the IdP's credentials.
_SETTINGS = ("sso_required", "jit_provisioning", "email_domains", "groups_claim", "group_roles")


def _connection_audit(connection: SsoConnection, actor: User | None, ip: str | None, **metadata) -> None:
    audit_event_record(
        workspace=connection.workspace,
        actor=actor,
        action=Action.SSO_CONNECTION_CHANGED,
        target_type="sso_connection",
        target_id=connection.pk,
        target_repr=str(connection.social_app),
        metadata={
            "provider": connection.social_app.provider,
            "provider_id": connection.social_app.provider_id,
            **{name: getattr(connection, name) for name in _SETTINGS},
            **metadata,
        },
        ip=ip,
    )


@transaction.atomic
def sso_connection_save(
    *, connection: SsoConnection, actor: User, changed: Iterable[str] = (), ip: str | None = None
) -> SsoConnection:
    """Create or change a connection (already validated by ``clean``), and audit it.

    ``changed`` names the fields the actor changed; the row records the connection's rules
    as they now are.
    """
    created = connection.pk is None
    connection.save()
    _connection_audit(connection, actor, ip, change="created" if created else "updated", changed=sorted(changed))
    return connection


@transaction.atomic
def sso_connection_delete(*, connection: SsoConnection, actor: User, ip: str | None = None) -> None:
    """Remove a workspace's connection: its IdP no longer signs anyone in to it.

    The SocialApp and the identities it created stay (an operator removes those in
    allauth's admin); "SSO required" ends with the connection.
    """
    _connection_audit(connection, actor, ip, change="deleted", changed=[])
    connection.delete()


@transaction.atomic
def sso_app_save(*, app: SocialApp, actor: User, changed: Iterable[str] = (), ip: str | None = None) -> SocialApp:
    """Save an IdP's allauth application; a change to a connection's IdP is audited there.

    Only the names of the changed fields are recorded, never their values (a client secret,
    a SAML private key).
    """
    app.save()
    connection = SsoConnection.objects.select_related("workspace", "social_app").filter(social_app=app).first()
    if connection is not None:
        _connection_audit(connection, actor, ip, change="idp_updated", changed=sorted(changed))
    return app


def _jit_membership(*, connection: SsoConnection, user: User, groups: list[str]) -> Membership | None:
    """The membership a just-in-time sign-in gives ``user``, if they have none yet.

    Written here rather than through ``apps.workspaces.services`` because no acting
    member decides it: the connection's rules (set by an operator, audited) and the IdP's
    groups do. The person themselves is the actor of the "joined" row, as when they accept
    an invitation.
    """
    workspace = connection.workspace
    if workspace.is_deleted or Membership.objects.filter(workspace=workspace, user=user).exists():
        return None
    role = connection.role_for_groups(groups)
    try:
        with transaction.atomic():  # savepoint: a concurrent first sign-in may win
            membership = Membership.objects.create(workspace=workspace, user=user, role=role)
    except IntegrityError:
        return None
    epochs.workspace_changed(workspace.pk)
    audit_event_record(
        workspace=workspace,
        actor=user,
        action=Action.MEMBER_JOINED,
        target_type="membership",
        target_id=membership.pk,
        target_repr=user.email,
        metadata={"role": role, "via": "sso", "provider_id": connection.social_app.provider_id, "groups": groups},
    )
    return membership


@transaction.atomic
def sso_sign_in_record(
    *, connection: SsoConnection, user: User, groups: list[str], ip: str | None = None
) -> Membership | None:
    """``user`` has signed in through ``connection``'s IdP: provision them just in time if
    the connection says so, and audit the sign-in in the connection's workspace.

    Returns the membership created, if any. Roles of existing members are not touched:
    a role changes through the portal or SCIM, where the change is checked and audited.
    """
    membership = (
        _jit_membership(connection=connection, user=user, groups=groups) if connection.jit_provisioning else None
    )
    audit_event_record(
        workspace=connection.workspace,
        actor=user,
        action=Action.SSO_SIGNED_IN,
        target_type="user",
        target_id=user.pk,
        target_repr=user.email,
        metadata={
            "provider": connection.social_app.provider,
            "provider_id": connection.social_app.provider_id,
            "provisioned": membership is not None,
            "role": membership.role if membership is not None else None,
            "groups": groups,
        },
        ip=ip,
    )
    return membership
