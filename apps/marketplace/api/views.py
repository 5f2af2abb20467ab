"""/api/v1/marketplace/: search, a server with its versions and install configs, trending,
collections, publishers, and counting an install. Open to everybody, as the pages are:
nothing here belongs to a workspace."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics
from rest_framework import serializers as drf_serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from apps.marketplace import search, selectors
from apps.marketplace.api import serializers
from apps.marketplace.configs import CLIENTS
from apps.marketplace.models import Server
from apps.marketplace.services.curation import InstallRateLimited, install_record
from apps.marketplace.views import visitor_key

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
    OpenApiParameter(
        "category", OpenApiTypes.STR, enum=list(search.CATEGORY_SLUGS), description="An awesome-list category's slug."
    ),
    OpenApiParameter("client", OpenApiTypes.STR, enum=list(CLIENTS), description="Servers this client can install."),
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
        context = {
            "versions": page.versions,
            "configs": page.configs,
            "document": page.document,
            "readme_html": page.readme_html,
            "collections": page.collections,
        }
        return Response(serializers.CatalogServerDetailSerializer(page.server, context=context).data)


def _no_server(name: str) -> Response:
    return Response({"error": f"No server named {name} in the marketplace."}, status=404)


ERROR = inline_serializer("MarketplaceError", fields={"error": drf_serializers.CharField()})


class ServerVersionsView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.CatalogVersionSerializer
    queryset = Server.objects.none()

    @extend_schema(
        tags=TAGS,
        summary="A server's versions, the latest first",
        responses={200: serializers.CatalogVersionSerializer(many=True), 404: ERROR},
    )
    def get(self, request: Request, name: str) -> Response:
        server = selectors.server_named(name)
        if server is None:
            return _no_server(name)
        versions = server.versions.order_by("-is_latest", "-published_at")
        return Response(serializers.CatalogVersionSerializer(versions, many=True).data)


class InstallCreateView(generics.GenericAPIView):
    """The API twin of a page's copy buttons: same service, same deduplication (per user or
    IP address and day) and the same hourly limit."""

    permission_classes = [AllowAny]
    serializer_class = serializers.InstallSerializer
    queryset = Server.objects.none()

    @extend_schema(
        tags=TAGS,
        summary="Count an install (a config copied)",
        request=serializers.InstallSerializer,
        responses={200: serializers.InstallCountedSerializer, 400: ERROR, 404: ERROR, 429: ERROR},
    )
    def post(self, request: Request, name: str) -> Response:
        server = selectors.server_named(name)
        if server is None:
            return _no_server(name)
        body = serializers.InstallSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            counted = install_record(server=server, via=body.validated_data["via"], visitor_key=visitor_key(request))
        except InstallRateLimited as exc:
            return Response({"error": str(exc)}, status=429)
        return Response({"counted": counted})


class TrendingView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.CatalogServerSerializer
    queryset = Server.objects.none()

    @extend_schema(
        tags=TAGS,
        summary="Trending servers: installs this week, decayed (half-life a week)",
        parameters=[OpenApiParameter("limit", OpenApiTypes.INT, description="At most 100; 20 by default.")],
        responses={200: serializers.CatalogServerSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        try:
            limit = min(max(int(request.query_params.get("limit", 20)), 1), 100)
        except ValueError:
            limit = 20
        return Response(serializers.CatalogServerSerializer(selectors.trending(limit=limit), many=True).data)


class CollectionListView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.CollectionSerializer
    queryset = Server.objects.none()

    @extend_schema(
        tags=TAGS,
        summary="Published collections and starter packs",
        responses={200: serializers.CollectionSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        return Response(serializers.CollectionSerializer(selectors.collections_published(), many=True).data)


class CollectionDetailView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.CollectionDetailSerializer
    queryset = Server.objects.none()

    @extend_schema(
        tags=TAGS,
        summary="A collection with its listed servers",
        responses={200: serializers.CollectionDetailSerializer, 404: ERROR},
    )
    def get(self, request: Request, slug: str) -> Response:
        collection = selectors.collection_page(slug)
        if collection is None:
            return Response({"error": f"No collection {slug}."}, status=404)
        return Response(serializers.CollectionDetailSerializer(collection).data)


class PublisherPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class PublisherListView(generics.ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.PublisherSerializer
    pagination_class = PublisherPagination
    queryset = Server.objects.none()

    def get_queryset(self):
        found = selectors.publishers()
        if self.request.query_params.get("verified") == "1":
            found = found.exclude(verification="")
        return found

    @extend_schema(
        tags=TAGS,
        summary="Publishers with listed servers",
        parameters=[OpenApiParameter("verified", OpenApiTypes.STR, enum=["1"], description="Only verified ones.")],
    )
    def get(self, request: Request) -> Response:
        return self.list(request)


class PublisherDetailView(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = serializers.PublisherDetailSerializer
    queryset = Server.objects.none()

    @extend_schema(
        tags=TAGS,
        summary="A publisher: its verification, and why, and its listed servers",
        responses={200: serializers.PublisherDetailSerializer, 404: ERROR},
    )
    def get(self, request: Request, namespace: str) -> Response:
        page = selectors.publisher_page(namespace)
        if page is None:
            return Response({"error": f"No publisher {namespace} in the marketplace."}, status=404)
        return Response(serializers.PublisherDetailSerializer(page).data)
