"""The /scim/v2/ endpoints: django-scim2's views, kept to the tenant.

The library's views do the HTTP work (bodies, pagination, SCIM errors, Location headers)
and call our adapters; authentication wraps each one (``apps.scim.auth``). What they cannot
know is the tenant, so finding one resource and listing them are ours: every read goes
through ``scim_users_for``/``scim_groups_for`` of the SCIM token's workspace, and another
workspace's person or group answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

import json

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django_scim import constants, exceptions
from django_scim import views as scim

from apps.scim.selectors import scim_group_for, scim_groups_for, scim_user_for, scim_users_for

MAX_COUNT = 200  # ServiceProviderConfig's filter.maxResults


def _names(value) -> set[str]:
    """``attributes``/``excludedAttributes`` (comma-separated, or a list in a search body) as
    lower-case paths without their schema URN: {"username", "name.givenname"}."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    names = set()
    for item in items:
        item = str(item).strip()
        if item.lower().startswith("urn:"):
            item = item.rsplit(":", 1)[-1]
        if item:
            names.add(item.lower())
    return names


def project(doc: dict, attributes: set[str], excluded: set[str]) -> dict:
    """A resource cut to ``attributes`` or without ``excluded`` (RFC 7644 §3.4.2.5), at the
    top level and one level down; ``id`` and ``schemas`` are always returned."""
    always = {"id", "schemas"}
    if not attributes and not excluded:
        return doc
    if attributes:
        tops = {name.split(".", 1)[0] for name in attributes}
        return {key: value for key, value in doc.items() if key in always or key.lower() in tops}
    out = {}
    for key, value in doc.items():
        if key.lower() in excluded and key not in always:
            continue
        subs = {name.split(".", 1)[1] for name in excluded if name.startswith(key.lower() + ".")}
        if subs and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k.lower() not in subs}
        out[key] = value
    return out


class _Tenant:
    """Pagination capped at ``MAX_COUNT``; ``attributes``/``excludedAttributes`` honoured."""

    def _page(self, request: HttpRequest) -> tuple[int, int]:
        start, count = super()._page(request)
        return start, max(0, min(count, MAX_COUNT))

    def _projection(self, request: HttpRequest) -> tuple[set[str], set[str]]:
        source = request.GET
        if request.method == "POST" and request.path.endswith(".search"):
            source = self.load_body(request.body)
        return _names(source.get("attributes")), _names(source.get("excludedAttributes"))

    def get_single(self, request: HttpRequest) -> HttpResponse:
        response = super().get_single(request)
        attributes, excluded = self._projection(request)
        if attributes or excluded:
            response.content = json.dumps(project(json.loads(response.content), attributes, excluded))
        return response

    def _build_response(self, request: HttpRequest, qs, start: int, count: int) -> HttpResponse:
        """One page as a ListResponse. Unlike the library's, a queryset is counted and
        sliced in the database, not read whole for every page."""
        total = qs.count() if isinstance(qs, QuerySet) else len(qs)
        page = list(qs[start - 1 : start - 1 + count])
        attributes, excluded = self._projection(request)
        resources = [project(self.scim_adapter(obj, request=request).to_dict(), attributes, excluded) for obj in page]
        doc = {
            "schemas": [constants.SchemaURI.LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": len(resources),
            "startIndex": start,
            "Resources": resources,
        }
        return HttpResponse(json.dumps(doc), content_type=constants.SCIM_CONTENT_TYPE)


class UsersView(_Tenant, scim.UsersView):
    def get_object(self):
        uuid = self.kwargs[self.lookup_url_kwarg]
        user = scim_user_for(self.request.scim_token.workspace, uuid)
        if user is None:
            raise exceptions.NotFoundError(uuid)
        return user

    def get_many(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("filter"):
            return self._search(request, request.GET["filter"], *self._page(request))
        return self._build_response(request, scim_users_for(request.scim_token.workspace), *self._page(request))


class GroupsView(_Tenant, scim.GroupsView):
    def get_object(self):
        uuid = self.kwargs[self.lookup_url_kwarg]
        group = scim_group_for(self.request.scim_token.workspace, uuid)
        if group is None:
            raise exceptions.NotFoundError(uuid)
        return group

    def get_many(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("filter"):
            return self._search(request, request.GET["filter"], *self._page(request))
        return self._build_response(request, scim_groups_for(request.scim_token.workspace), *self._page(request))


class UserSearchView(_Tenant, scim.UserSearchView):
    pass


class GroupSearchView(_Tenant, scim.GroupSearchView):
    pass


class _Discovery:
    """The library answers a discovery list without ``totalResults`` (RFC 7644 §3.4.2 requires
    it in every ListResponse) and an unknown id with an empty 404; we complete both."""

    def resource(self, doc: dict) -> dict:
        return doc

    def get(self, request: HttpRequest, uuid: str | None = None, *args, **kwargs) -> HttpResponse:
        response = super().get(request, uuid, *args, **kwargs)
        if response.status_code == 404:
            raise exceptions.NotFoundError(uuid)
        doc = json.loads(response.content)
        if doc.get("schemas") == [constants.SchemaURI.LIST_RESPONSE]:
            resources = [self.resource(item) for item in doc["Resources"]]
            count = len(resources)
            doc = {**doc, "Resources": resources, "totalResults": count, "itemsPerPage": count, "startIndex": 1}
        else:
            doc = self.resource(doc)
        response.content = json.dumps(doc)
        return response


SCHEMA_URI = "urn:ietf:params:scim:schemas:core:2.0:Schema"


class SchemasView(_Discovery, scim.SchemasView):
    def resource(self, doc: dict) -> dict:
        # The library's schema documents lack their own "schemas" (RFC 7643 §7).
        return {"schemas": [SCHEMA_URI], **doc}


class ResourceTypesView(_Discovery, scim.ResourceTypesView):
    pass


class NotFoundView(scim.SCIMView):
    """Anything else under /scim/v2/ (after authentication): a SCIM 404, not an HTML page."""

    http_method_names = ["get", "post", "put", "patch", "delete"]

    def _missing(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        raise exceptions.NotFoundError(request.path)

    get = post = put = patch = delete = _missing


class NotImplementedView(scim.SCIMView):
    """What we do not offer (bulk, /Me, searching every resource type at once): 501 with a
    SCIM error body, which clients read as "not supported" (the library's 501 has no body)."""

    http_method_names = ["get", "post", "put", "patch", "delete"]

    def _unsupported(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        raise exceptions.NotImplementedError(f"{request.method} {request.path} is not supported.")

    get = post = put = patch = delete = _unsupported
