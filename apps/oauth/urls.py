"""The authorization server's URLs, at the root: RFC 8414 and RFC 9728 documents live at
fixed well-known paths, and the issuer is ``MCPNEST_PUBLIC_URL`` itself."""

from django.urls import path
from oauth2_provider import views as toolkit

from apps.oauth import views

# The toolkit's views reverse "oauth2_provider:<name>" (the metadata documents do).
app_name = "oauth2_provider"

urlpatterns = [
    path(
        ".well-known/oauth-authorization-server",
        toolkit.OAuthServerMetadataView.as_view(),
        name="oauth-server-metadata",
    ),
    path(
        ".well-known/oauth-protected-resource/api/gw/<slug:slug>",
        views.ProtectedResourceMetadataView.as_view(),
        name="resource-metadata",
    ),
    path("oauth/authorize/", views.ConsentView.as_view(), name="authorize"),
    path("oauth/token/", views.JsonTokenView.as_view(), name="token"),
    path("oauth/revoke/", toolkit.RevokeTokenView.as_view(), name="revoke-token"),
    path("oauth/register/", views.RegistrationView.as_view(), name="dcr-register"),
    path(
        "oauth/register/<str:client_id>/",
        views.RegistrationManagementView.as_view(),
        name="dcr-register-management",
    ),
]
