from django.urls import path

from apps.marketplace import views

app_name = "marketplace"

urlpatterns = [
    path("servers/", views.server_list, name="list"),
    # Registry names hold a slash (namespace/name).
    path("servers/<path:name>/", views.server_detail, name="detail"),
]
