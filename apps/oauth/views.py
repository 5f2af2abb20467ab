"""The authorization server's pages and documents, on top of django-oauth-toolkit.

* ``ProtectedResourceMetadataView``: RFC 9728 metadata of one workspace's gateway;
* ``ConsentView``: the authorization endpoint's page, which names the client, where it
  sends the member back, the workspace and the scope, and refuses anybody who is not a
  member of that workspace;
* ``RegistrationView``: RFC 7591 registration with OAuth 2.1's redirect rules.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.forms import AllowForm
from oauth2_provider.models import Application
from oauth2_provider.views import (
    AuthorizationView,
    DynamicClientRegistrationManagementView,
    DynamicClientRegistrationView,
    TokenView,
)
from oauth2_provider.views.metadata import OAuthProtectedResourceMetadataView

from apps.core.http import client_ip
from apps.oauth import services
from apps.oauth.registration import redirect_uri_problem
from apps.oauth.selectors import SCOPE, gateway_resource, memberships_for_consent, resource_slug
from apps.sso.selectors import sso_session_blocks
from apps.workspaces.models import Workspace


class ProtectedResourceMetadataView(OAuthProtectedResourceMetadataView):
    """``/.well-known/oauth-protected-resource/api/gw/<slug>``: the ``resource`` is exactly
    the URL clients call, built from ``MCPNEST_PUBLIC_URL``, never the request's Host."""

    def get(self, request, *args, slug: str, **kwargs):
        if not Workspace.objects.active().filter(slug=slug).exists():
            raise Http404("No gateway at this address.")
        self.slug = slug
        return super().get(request, *args, **kwargs)

    def get_resource(self, request):
        return gateway_resource(self.slug)

    def get_scopes_supported(self):
        return [SCOPE]


class ConsentForm(AllowForm):
    # Chosen on the page when the client did not name a resource (RFC 8707 is optional).
    workspace = forms.SlugField(required=False, widget=forms.HiddenInput())


class ConsentView(AuthorizationView):
    template_name = "oauth/consent.html"
    form_class = ConsentForm

    def _refuse(self, request, *, title: str, message: str, status: int):
        return render(request, "oauth/refused.html", {"title": title, "message": message}, status=status)

    def _checks(self, request, *, client_id: str, resources: list[str], redirect_uri: str):
        """A refusal page, or None. It never redirects: the client is not trusted yet."""
        problem = redirect_uri_problem(redirect_uri) if redirect_uri else None
        if problem:
            return self._refuse(request, title="This client's address is not allowed", message=problem, status=400)
        if len(resources) > 1:
            return self._refuse(
                request,
                title="One workspace at a time",
                message="The client asked for several resources; a connection is for one workspace's gateway.",
                status=400,
            )
        if resources:
            slug = resource_slug(resources[0])
            workspace = Workspace.objects.active().filter(slug=slug).first() if slug else None
            if workspace is None:
                return self._refuse(
                    request,
                    title="Unknown gateway",
                    message=f"The client asked for access to {resources[0]}, which is not a gateway of this MCPNest.",
                    status=400,
                )
            if sso_session_blocks(request=request, workspace=workspace):
                self._audit_refusal(request, client_id=client_id, workspace=workspace, reason="SSO required")
                return self._refuse(
                    request,
                    title="Sign in with your company first",
                    message=(
                        f"“{workspace.name}” requires single sign-on: sign out, sign in through your company's "
                        "identity provider (Sign in with your company, on the sign-in page), then connect the client."
                    ),
                    status=403,
                )
            if not workspace.memberships.filter(user=request.user).exists():
                self._audit_refusal(request, client_id=client_id, workspace=workspace, reason="not a member")
                return self._refuse(
                    request,
                    title="You are not a member of this workspace",
                    message=(
                        f"You are signed in as {request.user.email}, who is not a member of “{workspace.name}”. "
                        "Ask one of its Owners or Admins to invite you, or sign in as a member."
                    ),
                    status=403,
                )
        elif not memberships_for_consent(user=request.user).exists():
            return self._refuse(
                request,
                title="You are not a member of any workspace",
                message="A client connects to a workspace's gateway; ask a workspace's Owner to invite you.",
                status=403,
            )
        return None

    def _audit_refusal(self, request, *, client_id: str, workspace, reason: str) -> None:
        application = Application.objects.filter(client_id=client_id).first()
        if application is not None:
            services.consent_refused(
                application=application, user=request.user, workspace=workspace, reason=reason, ip=client_ip(request)
            )

    def get(self, request, *args, **kwargs):
        refusal = self._checks(
            request,
            client_id=request.GET.get("client_id", ""),
            resources=request.GET.getlist("resource"),
            redirect_uri=request.GET.get("redirect_uri", ""),
        )
        return refusal or super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        resource = (context.get("resource") or "").strip()
        application = context.get("application")
        context["workspace"] = (
            Workspace.objects.active().filter(slug=resource_slug(resource)).first() if resource else None
        )
        context["workspaces"] = [] if resource else list(memberships_for_consent(user=self.request.user))
        if application is not None:
            context["redirect_host"] = _host(self.request.GET.get("redirect_uri") or application.default_redirect_uri)
            context["registration"] = application.get_registration_source_display()
        return context

    def form_valid(self, form):
        data = form.cleaned_data
        application = Application.objects.filter(client_id=data.get("client_id", "")).first()
        if application is None:
            return self._refuse(self.request, title="Unknown client", message="Register the client again.", status=400)
        resource = (data.get("resource") or "").strip()
        if not resource and data.get("workspace"):
            resource = gateway_resource(data["workspace"])
        refusal = self._checks(
            self.request,
            client_id=application.client_id,
            resources=resource.split() if resource else [],
            redirect_uri=data.get("redirect_uri", ""),
        )
        if refusal is not None:
            return refusal
        if not resource:
            return self._refuse(
                self.request, title="Choose a workspace", message="Pick the workspace to connect.", status=400
            )
        workspace = Workspace.objects.active().get(slug=resource_slug(resource))
        data["resource"] = resource
        response = super().form_valid(form)
        ip = client_ip(self.request)
        if not data.get("allow"):
            services.consent_refused(
                application=application, user=self.request.user, workspace=workspace, reason="declined", ip=ip
            )
        elif response.status_code == 302 and "code=" in response.get("Location", ""):
            services.connection_consent(
                application=application,
                user=self.request.user,
                workspace=workspace,
                scope=data.get("scope") or SCOPE,
                ip=ip,
            )
        return response


def _host(uri: str | None) -> str:
    """Where the member is sent back, as the consent page names it: the host (with port),
    or the private-use scheme of a desktop client."""
    parts = urlsplit(uri or "")
    return parts.netloc or (f"{parts.scheme}:" if parts.scheme else "")


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class OpenToBrowsersMixin:
    """Browser-based clients (the MCP Inspector) call registration and the token endpoint
    from their own origin. These endpoints take no cookies, so any origin may call them
    (and CSRF does not apply: the toolkit's own views are exempt, this dispatch too)."""

    def options(self, request, *args, **kwargs):
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, MCP-Protocol-Version"
        response["Access-Control-Max-Age"] = "86400"
        return self._open(response)

    def dispatch(self, request, *args, **kwargs):
        return self._open(super().dispatch(request, *args, **kwargs))

    @staticmethod
    def _open(response):
        response["Access-Control-Allow-Origin"] = "*"
        return response


class RegistrationView(OpenToBrowsersMixin, DynamicClientRegistrationView):
    """RFC 7591 registration: the toolkit's, after OAuth 2.1's redirect URI rules."""

    def post(self, request, *args, **kwargs):
        response = _redirect_uris_refused(request) or super().post(request, *args, **kwargs)
        if response.status_code == 201:
            # The toolkit builds this URL from the request's Host; ours come from the public URL.
            body = json.loads(response.content)
            path = reverse("oauth2_provider:dcr-register-management", args=[body["client_id"]])
            body["registration_client_uri"] = f"{settings.MCPNEST_PUBLIC_URL}{path}"
            response.content = json.dumps(body)
        return response


class RegistrationManagementView(DynamicClientRegistrationManagementView):
    """RFC 7592: a client reads or updates its own registration, under the same rules."""

    def put(self, request, *args, **kwargs):
        return _redirect_uris_refused(request) or super().put(request, *args, **kwargs)


def _redirect_uris_refused(request) -> JsonResponse | None:
    """A 400 naming the first redirect URI OAuth 2.1 does not allow, or None."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None  # the toolkit answers malformed JSON itself
    if isinstance(body, dict) and isinstance(body.get("redirect_uris"), list):
        for uri in body["redirect_uris"]:
            problem = redirect_uri_problem(uri) if isinstance(uri, str) else None
            if problem:
                return JsonResponse({"error": "invalid_redirect_uri", "error_description": problem}, status=400)
    return None


class JsonTokenView(OpenToBrowsersMixin, TokenView):
    """The token endpoint; its error bodies (JSON, RFC 6749 §5.2) are labelled as such,
    which the toolkit leaves to oauthlib, which does not."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        if response.content.startswith(b"{") and not response.get("Content-Type", "").startswith("application/json"):
            response["Content-Type"] = "application/json"
        response.setdefault("Cache-Control", "no-store")
        return response
