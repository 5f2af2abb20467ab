from django.apps import AppConfig


class SsoConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.sso"
    label = "sso"
    verbose_name = "Single sign-on"

    def ready(self) -> None:
        from apps.sso import receivers  # noqa: F401
