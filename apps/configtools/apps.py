from django.apps import AppConfig


class ConfigToolsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.configtools"
    label = "configtools"
    verbose_name = "Config tools"
