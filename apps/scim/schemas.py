"""The schemas /scim/v2/Schemas publishes: django-scim2's RFC 7643 documents, cut down to
what we store, so that an IdP or a conformance checker reading them knows what round-trips.

Users: ``userName`` (the person's email address, our login), ``name.givenName`` and
``name.familyName``, ``active`` (always set); ``displayName``, ``emails`` and ``groups``
are derived, so read-only. Groups: ``displayName`` (required) and ``members``.
The enterprise extension is not published: we store none of it.
"""

from __future__ import annotations

import copy
from typing import Any

from django_scim import constants
from django_scim.schemas import ALL

USER_ATTRIBUTES = {"userName", "name", "displayName", "active", "emails", "groups"}
USER_NAME_PARTS = {"givenName", "familyName"}
READ_ONLY = {"displayName", "emails", "groups"}
GROUP_ATTRIBUTES = {"displayName", "members"}


def _user(schema: dict[str, Any]) -> dict[str, Any]:
    attributes = []
    for attribute in schema["attributes"]:
        if attribute["name"] not in USER_ATTRIBUTES:
            continue
        attribute = copy.deepcopy(attribute)
        if attribute["name"] in READ_ONLY:
            attribute["mutability"] = "readOnly"
        if attribute["name"] == "active":
            attribute["required"] = True  # every person is on or off; there is no "unassigned"
        if attribute["name"] == "userName":
            attribute["description"] = "The person's email address: the address they sign in with. REQUIRED."
        if attribute["name"] == "name":
            attribute["subAttributes"] = [sub for sub in attribute["subAttributes"] if sub["name"] in USER_NAME_PARTS]
        attributes.append(attribute)
    return {**schema, "attributes": attributes}


def _group(schema: dict[str, Any]) -> dict[str, Any]:
    attributes = [
        {**attribute, "required": attribute["name"] == "displayName"}
        for attribute in schema["attributes"]
        if attribute["name"] in GROUP_ATTRIBUTES
    ]
    return {**schema, "attributes": attributes}


def published() -> list[dict[str, Any]]:
    """The ``SCHEMAS_GETTER`` of ``SCIM_SERVICE_PROVIDER``."""
    schemas = []
    for schema in ALL:
        if schema["id"] == constants.SchemaURI.USER:
            schemas.append(_user(schema))
        elif schema["id"] == constants.SchemaURI.GROUP:
            schemas.append(_group(schema))
        elif not schema["id"].startswith(constants.SchemaURI.ENTERPRISE_URN):
            schemas.append(schema)
    return schemas
