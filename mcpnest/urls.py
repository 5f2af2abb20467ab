from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.gateway.views import outside_asgi as gateway_outside_asgi
from apps.marketplace.registry_urls import workspace_urlpatterns as workspace_registry_urls

# Staff sign in through allauth, so MFA and its rate limits apply to the admin too.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "MCPNest administration"
admin.site.site_title = "MCPNest admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/sso/", include("apps.sso.urls")),
    path("accounts/", include("allauth.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("mcpnest.api_urls")),
    path("api/gw/<slug:slug>", gateway_outside_asgi, name="gateway"),
    path("v0.1/", include("apps.marketplace.registry_urls")),
    path("api/registry/<slug:workspace>/v0.1/", include(workspace_registry_urls)),
    path("tools/", include("apps.configtools.urls")),
    path("scim/v2/", include("apps.scim.urls")),
    path("", include("apps.oauth.urls")),
    path("", include("apps.marketplace.urls")),
    path("", include("apps.portal.urls")),
]
