"""Keeping the access key out of logs and error reports.

The key travels in the query string (`?wpf_action=...&access_key=KEY`, the URL format Customer.io journeys and
WP Fusion use), so every place that prints a request URL must drop it: request log lines (`django.server`,
`django.request`) and Django's error reports.
"""

import logging
import re

from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from settings_app.redaction import MASK, is_secret_key

_SECRET_PARAM = re.compile(r"(?i)((?:access[_-]?key|api[_-]?key|user_pass|password)=)[^&\s\"']*")


def scrub(text: str) -> str:
    return _SECRET_PARAM.sub(rf"\g<1>{MASK}", text)


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message (and string arguments) with secret query parameters masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: scrub(value) if isinstance(value, str) else value for key, value in record.args.items()}
        # The request object rides along on django.request records; handlers that format it see only the path.
        return True


class SafeReporterFilter(SafeExceptionReporterFilter):
    def cleanse_special_types(self, request, value):
        # Frame variables: a request's repr and any string may carry the webhook URL with its key.
        value = super().cleanse_special_types(request, value)
        if isinstance(value, HttpRequest):
            return scrub(repr(value))
        if isinstance(value, str):
            return scrub(value)
        return value

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
