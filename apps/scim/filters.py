"""SCIM ``filter=`` expressions as querysets of the tenant's own rows.

django-scim2's default parsers write raw SQL against the whole user table, with columns
our User has not (``username``). These use scim2-filter-parser's Django transpiler (the
library's own dependency) instead, on ``scim_users_for``/``scim_groups_for``, so a filter
can never reach past the tenant. Attributes we do not map make the filter invalid (400)
rather than silently matching everyone.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django_scim import exceptions
from scim2_filter_parser.transpilers.django_q_object import get_query

from apps.scim.selectors import scim_groups_for, scim_users_for

USER_URI = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URI = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _with_uri(attrs: dict[tuple[str, str | None], str], uri: str) -> dict[tuple[str, str | None, str | None], str]:
    """Each attribute both bare (``userName``) and fully qualified (``urn:…:User:userName``)."""
    mapped: dict[tuple[str, str | None, str | None], str] = {}
    for (attr, sub), field in attrs.items():
        mapped[(attr, sub, None)] = field
        mapped[(attr, sub, uri)] = field
    return mapped


class _Filter:
    attr_map: dict = {}

    @classmethod
    def queryset(cls, request: HttpRequest) -> QuerySet:
        raise NotImplementedError

    @classmethod
    def search(cls, filter_query: str, request: HttpRequest) -> list:
        try:
            query = get_query(filter_query, cls.attr_map)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise exceptions.BadRequestError(f"Invalid filter: {exc}", scim_type="invalidFilter") from None
        if not isinstance(query, Q):
            raise exceptions.BadRequestError(
                f"Filter {filter_query!r} uses an attribute this service does not filter on.", scim_type="invalidFilter"
            )
        try:
            # Evaluated here, so a value of the wrong type (``id eq "x"``) is the caller's error.
            return list(cls.queryset(request).filter(query).distinct())
        except (ValueError, ValidationError) as exc:
            raise exceptions.BadRequestError(f"Invalid filter value: {exc}", scim_type="invalidFilter") from None


class UserFilter(_Filter):
    # userName is the person's email (our login). SCIM compares it case-insensitively, as
    # the transpiler does for every "eq".
    attr_map = _with_uri(
        {
            ("id", None): "pk",
            ("userName", None): "email",
            ("externalId", None): "scim_external_id",
            ("name", "givenName"): "first_name",
            ("name", "familyName"): "last_name",
            ("emails", None): "email",
            ("emails", "value"): "email",
            ("active", None): "is_active",
        },
        USER_URI,
    )

    @classmethod
    def queryset(cls, request: HttpRequest) -> QuerySet:
        return scim_users_for(request.scim_token.workspace)


class GroupFilter(_Filter):
    attr_map = _with_uri(
        {
            ("id", None): "scim_id",
            ("displayName", None): "display_name",
            ("externalId", None): "external_id",
            ("members", "value"): "members__pk",
            ("members", None): "members__pk",
        },
        GROUP_URI,
    )

    @classmethod
    def queryset(cls, request: HttpRequest) -> QuerySet:
        return scim_groups_for(request.scim_token.workspace)
