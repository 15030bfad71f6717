from django.apps import AppConfig


class UsersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "users"

    def ready(self):
        from . import mail, signals  # noqa: F401  (registers the mail check, connects the receivers)
