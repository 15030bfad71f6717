from django.apps import AppConfig


class CioConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cio"
    verbose_name = "Customer.io"
