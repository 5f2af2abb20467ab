"""People and their API keys in the admin."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.models import ApiKey, User
from apps.accounts.services import api_key_revoke
from apps.core.admin import ReadOnlyAdminMixin
from apps.workspaces.models import Membership


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)
        field_classes = {}

    def clean_email(self) -> str:
        # Stored lower-case (User.save); normalise first so the uniqueness check sees it.
        return self.cleaned_data["email"].strip().lower()


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"
        field_classes = {}

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class MembershipInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Where the person belongs. Roles change through the membership admin (services, audit)."""

    model = Membership
    fields = ("workspace", "role", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("workspace")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin for an email-only user (there is no username)."""

    form = UserEditForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),)
    list_display = ("email", "first_name", "last_name", "is_active", "is_staff", "is_superuser", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined")
    inlines = (MembershipInline,)

    def get_inlines(self, request: HttpRequest, obj=None):
        return self.inlines if obj else ()  # the add form asks only for the email and password

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Deleting a person would cascade their memberships and gateway tokens away with no
        # revocation broadcast, no audit event and no last-Owner check. Deactivate them
        # (is_active) and remove them from workspaces through the membership admin instead.
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: keys are issued by their owner (the raw key is shown to them once) and revoked here.

    Revoked, never deleted: the row stays, so its use stays explainable. The digest is never
    shown: it is excluded from every page.
    """

    list_display = ("prefix", "name", "user", "is_active", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("prefix", "name", "user__email")
    exclude = ("digest",)
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # The service lets an owner or a superuser revoke; the admin is for operators.
        return request.user.is_superuser

    @admin.action(description="Revoke selected API keys", permissions=("revoke",))
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = []
        for key in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            api_key_revoke(user=request.user, key=key)
            revoked.append(str(key))
        if revoked:
            self.message_user(request, f"Revoked: {', '.join(revoked)}.", messages.SUCCESS)
        else:
            self.message_user(request, "The selected keys were already revoked.", messages.INFO)
