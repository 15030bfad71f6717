from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"

    def ready(self):
        from django.core.servers.basehttp import WSGIServer
        from django.db.backends.signals import connection_created

        from cio.transport import api_call_finished

        from .cio_calls import count_call
        from .message_events import linking  # noqa: F401 (links waiting message events to users who appear)
        from .outages import connection_made

        # Customer.io calls per hour for the admin overview: counted in memory, written once a minute.
        api_call_finished.connect(count_call, dispatch_uid="webhooks.cio_calls")
        # A new database connection ends an outage this process met (its one "back" line).
        connection_created.connect(connection_made, dispatch_uid="webhooks.outages")

        # Django's development server (runserver, the tests' live server) listens with a backlog of 10: a journey's
        # burst of 20 webhooks on new connections overflows it, the kernel holds the rest back for its one-second
        # SYN retry, and they arrive after the others were answered — the site then reads Customer.io for them
        # again. gunicorn listens with 2048; 128 makes the development server behave as production does.
        WSGIServer.request_queue_size = max(WSGIServer.request_queue_size, 128)
