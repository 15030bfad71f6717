from django.apps import AppConfig


class SettingsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "settings_app"
    verbose_name = "Customer.io webhook settings"

    def ready(self):
        from . import freshness
        from .models import FieldMapping, WebhookSettings

        freshness.watch("webhook_settings", WebhookSettings)
        freshness.watch("field_mappings", FieldMapping)
