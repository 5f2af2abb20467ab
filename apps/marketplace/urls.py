from django.urls import path, re_path

from apps.marketplace import publish_views, views

app_name = "marketplace"

urlpatterns = [
    path("servers/", views.server_list, name="list"),
    # Before the server pages, whose <path:name> would take "publish/" for a server's name.
    path("servers/publish/", publish_views.publish, name="publish"),
    path("servers/publish/submissions/", publish_views.submissions, name="submissions"),
    # Registry names hold exactly one slash (namespace/name): spelt out here so that a server
    # named ``…/installs`` still reaches its page below.
    re_path(r"^servers/(?P<name>[^/]+/[^/]+)/installs/$", views.server_install, name="install"),
    # Registry names hold a slash (namespace/name).
    path("servers/<path:name>/", views.server_detail, name="detail"),
    path("collections/", views.collection_list, name="collections"),
    path("collections/<slug:slug>/", views.collection_detail, name="collection"),
    path("publishers/<path:namespace>/", views.publisher_detail, name="publisher"),
]
