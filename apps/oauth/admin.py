"""OAuth connections in the admin: which client acts for whom, where, since when.

The toolkit registers its own admins for clients and tokens (tokens are stored as digests
only, so nothing secret shows). Connections are written by consent and removed by
revocation (portal, SCIM, the member leaving); the admin only reads them.
"""

from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin
from apps.oauth.models import Connection


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("application", "user", "workspace", "scope", "consented_at", "last_used_at")
    list_filter = ("workspace", ("last_used_at", admin.EmptyFieldListFilter))
    list_select_related = ("application", "user", "workspace")
    search_fields = ("user__email", "application__name", "application__client_id")
    date_hierarchy = "consented_at"
