"""Keeping the access key out of logs and error reports.

The key travels in the query string (`?wpf_action=...&access_key=KEY`, the URL format Customer.io journeys and
WP Fusion use), so every place that prints a request URL must drop it: request log lines (`django.server`,
`django.request`) and Django's error reports. What counts as a secret, and the text scrubber, live in
settings_app.redaction; Sentry's events are scrubbed in webhooks.error_reports.
"""

import logging

from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from settings_app.redaction import MASK, is_secret_key, scrub


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message (formatted with its arguments) and traceback text with secrets masked
    (settings_app.redaction.scrub). On every handler, before any formatter (plain or JSON) sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, dict):  # a dict message is the JSON formatter's to write (and scrub)
            # The message is formatted first, then scrubbed: scrubbing the format string alone would turn
            # "access_key=%s" into a string without its placeholder, and the failed formatting would print the raw
            # arguments to stderr.
            try:
                message = record.getMessage()
            except Exception:  # a broken logging call: its message without the arguments, rather than a report of them
                message = str(record.msg)
            record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            # An exception's message may quote a URL; formatters print exc_text when it is set.
            record.exc_text = scrub(_TRACEBACKS.formatException(record.exc_info))
        # The request object rides along on django.request records; handlers that format it see only the path.
        return True


_TRACEBACKS = logging.Formatter()


class OneLineWarning(logging.Filter):
    """Logs a record as one WARNING line: its level lowered, its traceback dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


class SafeReporterFilter(SafeExceptionReporterFilter):
    def cleanse_special_types(self, request, value):
        # Frame variables: a request's repr (Django's or DRF's), a parsed query dict and any string may carry the
        # webhook URL or the key itself.
        value = super().cleanse_special_types(request, value)
        if isinstance(value, HttpRequest):
            return scrub(repr(value))
        if isinstance(value, str):
            return scrub(value)
        try:
            shown = repr(value)
        except Exception:  # a broken __repr__ is the debug page's problem, not ours
            return value
        cleaned = scrub(shown)
        return cleaned if cleaned != shown else value

    def get_safe_request_meta(self, request):
        meta = super().get_safe_request_meta(request)
        for name in ("QUERY_STRING", "HTTP_REFERER", "REQUEST_URI", "RAW_URI"):
            if name in meta and isinstance(meta[name], str):
                meta[name] = scrub(meta[name])
        return meta


class SafeExceptionReporter(ExceptionReporter):
    """Error pages and admin error emails without secret GET parameters or the full query in the URI."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        if self.request is not None:
            data["request_GET_items"] = [
                (key, MASK if is_secret_key(key) else value) for key, value in self.request.GET.items()
            ]
            data["request_insecure_uri"] = scrub(str(data.get("request_insecure_uri", "")))
        return data


class ScrubDebugPagesMiddleware:
    """With DEBUG on, Django's 404 and 500 pages print the request URL, frame variables and more: remove every
    valid access key from them, wherever it appears (URL, header, a variable), whatever the reporter filter missed.
    Outermost but for the request id, so it sees the technical pages of every layer. Does nothing with DEBUG off."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        from django.conf import settings

        if settings.DEBUG and response.status_code >= 400 and not getattr(response, "streaming", False):
            content_type = response.get("Content-Type", "")
            if content_type.startswith(("text/html", "text/plain")):
                response.content = self._scrub(response.content.decode("utf-8", "replace")).encode("utf-8")
        return response

    @staticmethod
    def _scrub(text: str) -> str:
        from settings_app.access_keys import previous_keys
        from settings_app.models import WebhookSettings

        try:
            site = WebhookSettings.load()
            keys = [site.access_key, *(previous.key for previous in previous_keys(site))]
        except Exception:  # the page is about a failure; the database may be part of it
            keys = []
        for key in keys:
            if key:
                text = text.replace(key, MASK)
        return scrub(text)
