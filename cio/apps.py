from django.apps import AppConfig


class CioConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cio"
    verbose_name = "Customer.io"

    def ready(self):
        from .metrics import count_api_call
        from .transport import api_call_finished

        api_call_finished.connect(count_api_call, dispatch_uid="cio.metrics.count_api_call")
