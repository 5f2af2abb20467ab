"""Single sign-on in the admin: each workspace's company IdP, and the IdPs themselves.

allauth's own SocialApp admin renders the client secret in a plain text box; it is
replaced here by one that never sends a secret back to the browser (the secret and a
SAML private key are write-only), and whose saves are audited on the connection's
workspace. allauth's SocialToken admin is removed: IdP tokens are not stored
(``SOCIALACCOUNT_STORE_TOKENS = False``), and bearer tokens are never shown.
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.admin import SocialAppAdmin as AllauthSocialAppAdmin
from allauth.socialaccount.admin import SocialAppForm as AllauthSocialAppForm
from allauth.socialaccount.models import SocialApp, SocialToken
from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from apps.core.admin import ServiceAdminMixin
from apps.core.http import client_ip
from apps.sso.models import SsoConnection
from apps.sso.services import sso_app_save, sso_connection_delete, sso_connection_save

MASK = "********"
# Keys of SocialApp.settings that hold secrets, at any depth (SAML: advanced.private_key).
SECRET_SETTINGS = frozenset({"private_key", "secret", "client_secret"})


def settings_masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if k in SECRET_SETTINGS and v else settings_masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [settings_masked(item) for item in value]
    return value


def settings_unmasked(value: Any, stored: Any) -> Any:
    """``value`` from the form with each masked secret put back from ``stored``."""
    if isinstance(value, dict):
        stored = stored if isinstance(stored, dict) else {}
        return {
            k: stored.get(k) if k in SECRET_SETTINGS and v == MASK else settings_unmasked(v, stored.get(k))
            for k, v in value.items()
        }
    return value


class WriteOnlySecretField(forms.CharField):
    """A secret the admin can set but never read back: the box is always empty, and empty
    means "keep the current one"."""

    widget = forms.PasswordInput(render_value=False, attrs={"size": "100", "autocomplete": "new-password"})

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)


class SocialAppForm(AllauthSocialAppForm):
    secret = WriteOnlySecretField(
        label="Client secret",
        required=False,
        help_text="Write-only: never shown again. Leave empty to keep the current secret.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("secret", None)
        if self.instance.pk:
            self.initial["settings"] = settings_masked(self.instance.settings)
        # Compared with the (masked) initial above, not with a hidden copy posted back.
        self.fields["settings"].show_hidden_initial = False
        self.fields[
            "settings"
        ].help_text = f"JSON (allauth's provider settings). Secrets in it show as {MASK}; leave {MASK} to keep them."

    def clean_secret(self) -> str:
        return self.cleaned_data.get("secret") or (self.instance.secret if self.instance.pk else "")

    def clean_settings(self) -> Any:
        value = self.cleaned_data.get("settings")
        return settings_unmasked(value, self.instance.settings if self.instance.pk else {})


admin.site.unregister(SocialApp)
admin.site.unregister(SocialToken)


@admin.register(SocialApp)
class SocialAppAdmin(ServiceAdminMixin, AllauthSocialAppAdmin):
    form = SocialAppForm
    list_display = ("name", "provider", "provider_id", "client_id", "connection")
    list_filter = ("provider",)
    search_fields = ("name", "provider_id", "client_id")
    fields = ("provider", "provider_id", "name", "client_id", "secret", "key", "settings")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("sso_connection__workspace")

    @admin.display(description="Workspace")
    def connection(self, app: SocialApp) -> str:
        connection = getattr(app, "sso_connection", None)
        return str(connection.workspace) if connection is not None else "—"

    def save_model(self, request: HttpRequest, obj: SocialApp, form, change: bool) -> None:
        sso_app_save(app=obj, actor=request.user, changed=form.changed_data, ip=client_ip(request))


@admin.register(SsoConnection)
class SsoConnectionAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """One workspace's company IdP and its rules; every save and delete is audited on the
    workspace (SSO_CONNECTION_CHANGED) and reloads its gateway."""

    list_display = ("workspace", "provider", "identity_provider_id", "domains", "sso_required", "jit_provisioning")
    list_filter = ("sso_required", "jit_provisioning", "social_app__provider")
    list_select_related = ("workspace", "social_app")
    search_fields = ("workspace__slug", "social_app__name", "social_app__provider_id")
    autocomplete_fields = ("workspace",)
    readonly_fields = ("idp_setup", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("workspace", "social_app", "idp_setup")}),
        ("Who signs in here", {"fields": ("email_domains", "sso_required")}),
        ("Provisioning", {"fields": ("jit_provisioning", "groups_claim", "group_roles")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: SsoConnection | None = None) -> tuple[str, ...]:
        # A connection belongs to its workspace for good: moving it would carry identities
        # (and "SSO required") from one tenant to another.
        return (*self.readonly_fields, "workspace") if obj is not None else self.readonly_fields

    @admin.display(description="Provider", ordering="social_app__provider")
    def provider(self, connection: SsoConnection) -> str:
        return "SAML 2.0" if connection.social_app.provider == "saml" else "OpenID Connect"

    @admin.display(description="Provider ID", ordering="social_app__provider_id")
    def identity_provider_id(self, connection: SsoConnection) -> str:
        return connection.social_app.provider_id

    @admin.display(description="E-mail domains")
    def domains(self, connection: SsoConnection) -> str:
        return ", ".join(connection.email_domains)

    @admin.display(description="For the IdP's administrator")
    def idp_setup(self, connection: SsoConnection) -> str:
        """The portal's URLs the IdP must be told about (paths; prefix the portal's origin)."""
        if connection.pk is None:
            return "Save first: the URLs depend on the application."
        app = connection.social_app
        if app.provider == "saml":
            org = app.client_id
            rows = [
                ("Sign-in", reverse("saml_login", kwargs={"organization_slug": org})),
                ("ACS (POST)", reverse("saml_acs", kwargs={"organization_slug": org})),
                ("SP entity ID / metadata", reverse("saml_metadata", kwargs={"organization_slug": org})),
            ]
        else:
            rows = [
                ("Sign-in", reverse("openid_connect_login", kwargs={"provider_id": app.provider_id})),
                ("Redirect URI", reverse("openid_connect_callback", kwargs={"provider_id": app.provider_id})),
            ]
        return format_html_join(mark_safe("<br>"), "{}: <code>{}</code>", rows)

    def save_model(self, request: HttpRequest, obj: SsoConnection, form, change: bool) -> None:
        sso_connection_save(connection=obj, actor=request.user, changed=form.changed_data, ip=client_ip(request))

    def delete_model(self, request: HttpRequest, obj: SsoConnection) -> None:
        sso_connection_delete(connection=obj, actor=request.user, ip=client_ip(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for connection in queryset.select_related("workspace", "social_app"):
            sso_connection_delete(connection=connection, actor=request.user, ip=client_ip(request))
