from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The small members area `make run` shows tags at work in. Development only: the settings install it with
    ENABLE_DEMO, which only `make run` sets."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo"
    verbose_name = "Demo members area"
