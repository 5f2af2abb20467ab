"""/api/v1/marketplace/: search, a server with its versions and install configs. Open to
everybody, as the pages are: nothing here belongs to a workspace."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from apps.marketplace import search, selectors
from apps.marketplace.api import serializers
from apps.marketplace.models import Server

TAGS = ["marketplace"]


class SearchPagination(PageNumberPagination):
    page_size = 24
    page_size_query_param = "page_size"
    max_page_size = 100


SEARCH_PARAMETERS = [
    OpenApiParameter("q", OpenApiTypes.STR, description="Words in the name, title or description."),
    OpenApiParameter("transport", OpenApiTypes.STR, enum=list(search.TRANSPORTS)),
    OpenApiParameter("package", OpenApiTypes.STR, enum=list(search.PACKAGE_TYPES)),
    OpenApiParameter("remote", OpenApiTypes.STR, enum=["1"], description="Only servers with a hosted endpoint."),
    OpenApiParameter("sort", OpenApiTypes.STR, enum=list(search.SORTS)),
]


class ServerListView(generics.ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.CatalogServerSerializer
    pagination_class = SearchPagination
    queryset = Server.objects.none()

    def get_queryset(self):
        return search.search(search.Search.from_params(self.request.query_params))

    @extend_schema(tags=TAGS, summary="Search the marketplace", parameters=SEARCH_PARAMETERS)
    def get(self, request: Request) -> Response:
        return self.list(request)


class ServerDetailView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.CatalogServerDetailSerializer
    queryset = Server.objects.none()

    @extend_schema(tags=TAGS, summary="A server: its score with reasons, versions, install configs and server.json")
    def get(self, request: Request, name: str) -> Response:
        page = selectors.ServerPage.of(name)
        if page is None:
            return Response({"error": f"No server named {name} in the marketplace."}, status=404)
        context = {"versions": page.versions, "configs": page.configs, "document": page.document}
        return Response(serializers.CatalogServerDetailSerializer(page.server, context=context).data)
