from django.apps import AppConfig


class UsersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "users"

    def ready(self):
        from settings_app import freshness

        from . import mail, signals  # noqa: F401  (registers the mail check, connects the receivers)
        from .access.checks import has_tag
        from .access.rules import watch_rules
        from .models import Tag, User
        from .services.tags import TAG_INDEX_KIND

        freshness.watch(TAG_INDEX_KIND, Tag)
        watch_rules()
        # `request.user.has_tag("VIP")` (docs/tags.md): the access check as a method of the user, attached here because
        # users.models sits below users.access and must not import it.
        User.has_tag = has_tag
