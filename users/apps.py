from django.apps import AppConfig


class UsersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "users"

    def ready(self):
        from settings_app import freshness

        from . import mail, signals  # noqa: F401  (registers the mail check, connects the receivers)
        from .access.rules import watch_rules
        from .models import Tag
        from .services.tags import TAG_INDEX_KIND

        freshness.watch(TAG_INDEX_KIND, Tag)
        watch_rules()
