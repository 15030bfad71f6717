"""Which request, and which delivery, a log line (or an error report) was written for.

Two context variables: the request id, set for each request by RequestIdMiddleware, and the delivery being processed
with its action, set by webhooks.processing and the queue's drain while they work on it. LogContextFilter copies
them onto every log record, so the JSON log format (webhooks.log_json) carries them on each line; the Sentry
integration (webhooks.error_reports) tags its events with them. Context variables, not thread locals: each gunicorn
thread, and each asyncio task, sees its own.

Imports no Django module: gunicorn's configuration uses the filter before Django is set up.
"""

import logging
import re
import secrets
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_META = "HTTP_X_REQUEST_ID"
# An id from the proxy or load balancer in front is kept, so that one id follows the request through every log: when
# it is a short, plain token. Anything else (long, spaces, quotes, control characters) could break or forge a log line
# in the plain format, and is replaced by our own.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=-]{1,64}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# (delivery id, action) of the delivery being processed, or (None, None).
delivery: ContextVar[tuple[int | None, str | None]] = ContextVar("delivery", default=(None, None))


def new_request_id() -> str:
    return secrets.token_hex(8)


def request_id_for(incoming: str) -> str:
    """The id to use for a request that sent `incoming` as its X-Request-ID ("" when none)."""
    return incoming if incoming and _SAFE_REQUEST_ID.fullmatch(incoming) else new_request_id()


class RequestIdMiddleware:
    """Outermost middleware: every request, the webhook's too (it is served further down, by
    WebhookShortcutMiddleware), runs inside its request id, and every answer names it in X-Request-ID.

    The id stays set until the request is finished (Django's request_finished, when the server closes the answer),
    not just until this middleware returns: Django logs a 4xx answer ("Not Found: /x") after the middleware, and
    gunicorn writes its access line after that. A dictionary read, a token, a context-variable write and a header:
    about 2 us a request, measured alone (bench/accept_profile.py shows it beside the other middleware)."""

    def __init__(self, get_response):
        from django.core.signals import request_finished

        self.get_response = get_response
        request_finished.connect(_forget_request_id, dispatch_uid="webhooks.log_context.forget_request_id")

    def __call__(self, request):
        # An incoming id is kept only from a trusted proxy (TRUSTED_PROXIES, as for X-Forwarded-For): from anyone
        # else it could forge the ids that tie log lines and error reports together.
        trusted = request.META.get("REMOTE_ADDR") in settings.TRUSTED_PROXIES
        incoming = request.META.get(_REQUEST_ID_META, "") if trusted else ""
        request.request_id = current = request_id_for(incoming)
        request_id.set(current)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = current
        return response


def _forget_request_id(**kwargs) -> None:
    request_id.set(None)


@contextmanager
def delivery_context(delivery_id: int | None, action: str | None):
    """Log lines (and error reports) written inside name this delivery and action."""
    token = delivery.set((delivery_id, action))
    try:
        yield
    finally:
        delivery.reset(token)


def name_action(action: str | None) -> None:
    """Inside delivery_context(): the delivery's action, once it is known."""
    delivery.set((delivery.get()[0], action))


class LogContextFilter(logging.Filter):
    """Puts request_id, delivery_id and action on every record (None where there is none); a value the record
    already carries (gunicorn's access line reads the request id from the answer) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        delivery_id, action = delivery.get()
        if getattr(record, "delivery_id", None) is None:
            record.delivery_id = delivery_id
        if getattr(record, "action", None) is None:  # an `action` passed as extra by the caller stays
            record.action = action
        return True
