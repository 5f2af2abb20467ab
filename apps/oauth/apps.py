from django.apps import AppConfig


class OAuthConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.oauth"
    label = "oauth"
    verbose_name = "OAuth (MCP authorization)"

    def ready(self) -> None:
        from apps.oauth import receivers  # noqa: F401
