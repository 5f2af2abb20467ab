"""The login page's "Sign in with your company": an address in, the company's IdP out."""

from __future__ import annotations

from allauth.account.utils import get_next_redirect_url
from allauth.socialaccount.providers.base.constants import AuthProcess
from django import forms
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.sso.selectors import connection_for_email, connection_for_workspace
from apps.workspaces.models import Workspace


class CompanySignInForm(forms.Form):
    email = forms.EmailField(label="Work e-mail", widget=forms.EmailInput(attrs={"autocomplete": "email"}))


@login_not_required
@require_http_methods(["GET", "POST"])
def company_sign_in(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: start the sign-in at the IdP whose connection owns the address's
    domain, as allauth's own provider login view does on POST (this form carries the CSRF
    token that makes starting a sign-in safe)."""
    form = CompanySignInForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        connection = connection_for_email(form.cleaned_data["email"])
        if connection is None:
            form.add_error("email", "Single sign-on is not set up for this domain. Sign in with your password.")
        else:
            provider = connection.social_app.get_provider(request)
            return provider.redirect(request, AuthProcess.LOGIN, next_url=get_next_redirect_url(request))
    return render(request, "sso/company_sign_in.html", {"form": form, "next": get_next_redirect_url(request) or ""})


def sso_required_response(request: HttpRequest, workspace: Workspace) -> HttpResponse:
    """The page a member shut out by "SSO required" sees (403), with a button that starts
    the sign-in at the workspace's IdP and comes back to the page they asked for."""
    connection = connection_for_workspace(workspace)
    sign_in_url = connection.social_app.get_provider(request).get_login_url(request) if connection else ""
    context = {"workspace": workspace, "sign_in_url": sign_in_url, "next": request.get_full_path()}
    return render(request, "sso/required.html", context, status=403)
