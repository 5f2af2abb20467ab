"""django-scim2 adapters: SCIM resources to and from our User and ScimGroup.

The library's views hand each request to an adapter: ``from_dict`` (POST, PUT) and
``handle_operations`` (PATCH) read the body, ``save`` and ``delete`` write, ``to_dict``
answers. Here reading turns the body into ``UserChanges``/``GroupChanges`` (Entra's and
Okta's shapes alike: capitalised ops, ``"False"`` strings, ops without a path), writing
calls ``apps.scim.services``, and answering shows only what the tenant (the SCIM token's
workspace) may see.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_scim import constants, exceptions
from django_scim.adapters import SCIMGroup, SCIMUser
from django_scim.models import SCIMServiceProviderConfig

from apps.accounts.models import User
from apps.core.errors import RuleViolation
from apps.core.http import client_ip
from apps.scim import services
from apps.scim.selectors import scim_users_for
from apps.scim.services import GroupChanges, UserChanges

USER_URI = constants.SchemaURI.USER
GROUP_URI = constants.SchemaURI.GROUP
_MEMBER_FILTER = re.compile(r'^members\[\s*value\s+eq\s+"([^"]*)"\s*\]$', re.IGNORECASE)


def base_location(request: HttpRequest | None = None, *args, **kwargs) -> str:
    """Resource locations on the host the IdP called (behind our proxies: their Host)."""
    return f"{request.scheme}://{request.get_host()}" if request is not None else ""


def _bad(detail: str, scim_type: str = "invalidValue") -> exceptions.BadRequestError:
    return exceptions.BadRequestError(detail, scim_type=scim_type)


def _write(call, *args, **kwargs):
    """Run a service; its refusals become SCIM errors (409 for rule conflicts, 400 for values)."""
    try:
        return call(*args, **kwargs)
    except services.ScimConflict as exc:
        raise exceptions.IntegrityError(str(exc), scim_type="uniqueness") from None
    except RuleViolation as exc:  # e.g. the last Owner cannot leave
        raise exceptions.IntegrityError(str(exc)) from None
    except ValidationError as exc:
        raise _bad(" ".join(exc.messages)) from None


def _bool(value: Any) -> bool:
    """SCIM booleans, and the strings Entra ID sends for them ("True", "False")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(f'"active" must be a boolean; got {value!r}.')


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise _bad(f"Expected a string; got {type(value).__name__}.")
    return str(value)


def _attr(path: str, uri: str) -> str:
    """A PATCH path without its schema URI, lower-cased: ``name.givenname``."""
    path = path.strip()
    if path.lower().startswith(uri.lower() + ":"):
        path = path[len(uri) + 1 :]
    return path.lower()


def _patch_items(operation: dict) -> tuple[str, list[tuple[str, Any]]]:
    """(op, [(path, value)]) for one PATCH operation; a pathless op's value is a dict of them."""
    if not isinstance(operation, dict):
        raise _bad("Each operation must be an object.", "invalidSyntax")
    op = str(operation.get("op", "")).lower()
    if op not in constants.VALID_PATCH_OPS:
        raise _bad(f"Unknown PATCH op {operation.get('op')!r}.", "invalidSyntax")
    path, value = operation.get("path"), operation.get("value")
    if path:
        return op, [(str(path), value)]
    if op == "remove":
        raise _bad('"path" is required for "remove".', "noTarget")
    if not isinstance(value, dict):
        raise _bad("An operation without a path needs an object value.", "invalidSyntax")
    return op, list(value.items())


class ScimUserAdapter(SCIMUser):
    """A person as the tenant sees them. ``id`` is the account's id; ``userName`` its email."""

    id_field = "pk"

    def __init__(self, obj, request=None):
        super().__init__(obj, request)
        self.changes = UserChanges()

    @property
    def workspace(self):
        return self.request.scim_token.workspace

    @property
    def display_name(self) -> str:
        full = f"{self.obj.first_name} {self.obj.last_name}".strip()
        return full or self.obj.email

    def _row(self) -> User:
        """The person as ``scim_users_for`` reads them (annotated, groups prefetched)."""
        if not hasattr(self.obj, "scim_member"):
            self.obj = scim_users_for(self.workspace).get(pk=self.obj.pk)
        return self.obj

    @classmethod
    def resource_type_dict(cls, request=None) -> dict[str, Any]:
        # RFC 7643 §6: the endpoint is relative to the base URL ("/Users"), not a site path.
        return {**super().resource_type_dict(request), "endpoint": "/Users"}

    def to_dict(self) -> dict[str, Any]:
        user = self._row()
        d: dict[str, Any] = {
            "schemas": [USER_URI],
            "id": self.id,
            "userName": user.email,
            "displayName": self.display_name,
            "emails": [{"value": user.email, "type": "work", "primary": True}],
            # Active, for the tenant: the account is on and they are in its workspace.
            "active": bool(user.is_active and user.scim_member),
            "groups": [
                {
                    "value": str(group.scim_id),
                    "$ref": ScimGroupAdapter(group, self.request).location,
                    "display": group.display_name,
                }
                for group in user.scim_tenant_groups
            ],
            "meta": {
                "resourceType": self.resource_type,
                "created": user.date_joined.isoformat(),
                "lastModified": (user.scim_updated_at or user.date_joined).isoformat(),
                "location": self.location,
            },
        }
        # An empty value is unassigned (RFC 7643 §2.5): left out, not sent as "".
        name = {key: value for key, value in (("givenName", user.first_name), ("familyName", user.last_name)) if value}
        if name:
            d["name"] = name
        if user.scim_external_id:
            d["externalId"] = user.scim_external_id
        return d

    def validate_dict(self, d: dict) -> None:
        if not isinstance(d, dict):
            raise _bad("The body must be a User object.", "invalidSyntax")

    def from_dict(self, d: dict) -> None:
        """POST and PUT: the whole resource. The account's email is ``userName`` when that is
        an address (Okta, and Entra's UPN), else the primary (or first) of ``emails``."""
        email = _text(d.get("userName")).strip()
        if "@" not in email:
            emails = [e for e in d.get("emails") or [] if isinstance(e, dict) and e.get("value")]
            emails.sort(key=lambda e: not e.get("primary"))
            email = _text(emails[0]["value"]) if emails else email
        name = d.get("name") if isinstance(d.get("name"), dict) else {}
        self.changes = UserChanges(
            email=email or None,
            given_name=_text(name.get("givenName")),
            family_name=_text(name.get("familyName")),
            external_id=_text(d["externalId"]) if "externalId" in d else None,
            active=_bool(d["active"]) if d.get("active") is not None else None,
        )

    def handle_operations(self, operations: list) -> None:
        """PATCH: collect every operation into one change, then write it once."""
        fields: dict[str, Any] = {}
        for operation in operations:
            op, items = _patch_items(operation)
            for path, value in items:
                self._patch_attr(fields, _attr(str(path), USER_URI), value, remove=op == "remove")
        self.changes = UserChanges(**fields)
        self.save()

    def _patch_attr(self, fields: dict[str, Any], attr: str, value: Any, *, remove: bool) -> None:
        if attr == "active":
            if not remove:
                fields["active"] = _bool(value)
        elif attr == "username" and not remove:
            fields["email"] = _text(value)
        elif attr == "externalid":
            fields["external_id"] = "" if remove else _text(value)
        elif attr == "name.givenname":
            fields["given_name"] = "" if remove else _text(value)
        elif attr == "name.familyname":
            fields["family_name"] = "" if remove else _text(value)
        elif attr == "name" and remove:
            fields["given_name"] = fields["family_name"] = ""
        elif attr == "name" and isinstance(value, dict):
            for key, sub in value.items():
                self._patch_attr(fields, f"name.{key.lower()}", sub, remove=remove)
        # Anything else (emails, displayName, title, the enterprise extension…) is not
        # stored: the account's address follows userName, and the rest is the IdP's own.

    def save(self) -> None:
        ip = client_ip(self.request)
        token = self.request.scim_token
        if self.obj.pk is None:
            self.obj = _write(services.scim_user_provision, token=token, changes=self.changes, ip=ip)
        else:
            self.obj = _write(services.scim_user_update, token=token, user=self.obj, changes=self.changes, ip=ip)

    def delete(self) -> None:
        _write(services.scim_user_delete, token=self.request.scim_token, user=self.obj, ip=client_ip(self.request))


class ScimGroupAdapter(SCIMGroup):
    """One workspace's IdP group; ``id`` is its UUID, members are User ids."""

    id_field = "scim_id"

    def __init__(self, obj, request=None):
        super().__init__(obj, request)
        self.changes = GroupChanges()

    @property
    def display_name(self) -> str:
        return self.obj.display_name

    @property
    def members(self) -> list[dict[str, str]]:
        return [
            {"value": str(user.pk), "$ref": ScimUserAdapter(user, self.request).location, "type": "User"}
            for user in self.obj.members.all()
        ]

    @classmethod
    def resource_type_dict(cls, request=None) -> dict[str, Any]:
        return {**super().resource_type_dict(request), "endpoint": "/Groups"}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schemas": [GROUP_URI],
            "id": self.id,
            "displayName": self.obj.display_name,
            "members": self.members,
            "meta": {
                "resourceType": self.resource_type,
                "created": self.obj.created_at.isoformat(),
                "lastModified": self.obj.updated_at.isoformat(),
                "location": self.location,
            },
        }
        if self.obj.external_id:
            d["externalId"] = self.obj.external_id
        return d

    def validate_dict(self, d: dict) -> None:
        if not isinstance(d, dict):
            raise _bad("The body must be a Group object.", "invalidSyntax")

    @staticmethod
    def _ids(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(m, dict) and "value" in m for m in value):
            raise _bad('Members must be a list of {"value": "<User id>"}.')
        return [_text(m["value"]) for m in value]

    def from_dict(self, d: dict) -> None:
        self.changes = GroupChanges(
            display_name=_text(d.get("displayName")) if "displayName" in d else None,
            external_id=_text(d["externalId"]) if "externalId" in d else None,
            members=self._ids(d.get("members")),
        )

    def handle_operations(self, operations: list) -> None:
        fields: dict[str, Any] = {}
        add: list[str] = []
        remove: list[str] = []
        for operation in operations:
            op, items = _patch_items(operation)
            for path, value in items:
                attr = _attr(str(path), GROUP_URI)
                one = _MEMBER_FILTER.match(attr)
                if one and op == "remove":
                    remove.append(one.group(1))
                elif attr == "members" and op == "add":
                    add += self._ids(value)
                elif attr == "members" and op == "remove":
                    if value is None:
                        fields["members"] = []
                    else:
                        remove += self._ids(value)
                elif attr == "members" and op == "replace":
                    fields["members"] = self._ids(value)
                elif attr == "displayname" and op != "remove":
                    fields["display_name"] = _text(value)
                elif attr == "externalid":
                    fields["external_id"] = "" if op == "remove" else _text(value)
                elif attr != "id":
                    raise exceptions.NotImplementedError(f"PATCH of Group {path!r} is not supported.")
        self.changes = GroupChanges(**fields, add=add or None, remove=remove or None)
        self.save()

    def save(self) -> None:
        ip = client_ip(self.request)
        token = self.request.scim_token
        if self.obj.pk is None:
            self.obj = _write(services.scim_group_create, token=token, changes=self.changes, ip=ip)
        else:
            self.obj = _write(services.scim_group_update, token=token, group=self.obj, changes=self.changes, ip=ip)

    def delete(self) -> None:
        _write(services.scim_group_delete, token=self.request.scim_token, group=self.obj, ip=client_ip(self.request))


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """What this service provider supports (RFC 7643 §5): filtering, PATCH; no bulk, sort,
    ETags or password changes (people sign in through the workspace's SSO)."""

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(
            {
                "filter": {"supported": True, "maxResults": 200},
                "changePassword": {"supported": False},
                "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            }
        )
        return d
