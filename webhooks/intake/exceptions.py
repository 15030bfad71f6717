"""Every answer the webhook gives for a request it does not process, and the one DRF exception handler that turns
any exception raised while serving it into the project's JSON shape, `{"error": code, "detail": text}`.

One class per error code, with its HTTP status and code on the class (as DRF's own APIException subclasses), so
the code that refuses a request says what is wrong and nothing else. DRF's own exceptions (a parse error, a method
not allowed, an unexpected failure) are translated here too: Customer.io never sees DRF's `{"detail": ...}` body,
and never an HTML error page.
"""

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.core.signals import got_request_exception
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..outages import RETRY_AFTER_SECONDS, database_unavailable, outage

# Where Django itself reports a request's unhandled exception (and what its AdminEmailHandler listens to).
request_logger = logging.getLogger("django.request")


class WebhookError(drf.APIException):
    """A request answered with a client error. `detail` is plain text: it never holds a key or a password (the
    messages name fields and limits, never values a caller sent)."""

    status_code = 400
    default_code = "bad_request"
    default_detail = "The request is not a webhook this site understands."

    def __init__(self, detail: str | None = None):
        # Plain text, not DRF's ErrorDetail list machinery: one string, rendered as is.
        self.detail = detail or self.default_detail

    @property
    def code(self) -> str:
        return self.default_code

    def answer(self) -> dict:
        return {"error": self.default_code, "detail": str(self.detail)}

    def headers(self) -> dict | None:
        return None


class InvalidAccessKey(WebhookError):
    status_code = 403
    default_code = "invalid_access_key"
    # WP Fusion's words: journeys and monitors may match on them.
    default_detail = "Invalid Access Key"


class TooManyRefusedRequests(WebhookError):
    status_code = 429
    default_code = "too_many_refused_requests"

    def __init__(self, wait: int, credentials: str = "access key"):
        self.wait = wait
        super().__init__(
            f"Too many requests with a wrong or missing {credentials} from this address: try again in {wait} s."
        )

    def headers(self) -> dict:
        return {"Retry-After": str(self.wait)}


class InvalidSignature(WebhookError):
    """The reporting webhook's request is not signed with a signing key, or its signature is too old (a replay)."""

    status_code = 401
    default_code = "invalid_signature"
    default_detail = "The signature matches no signing key."

    def headers(self) -> dict:
        # A 401 names how to authenticate: Customer.io's signature headers (no browser prompts for this scheme).
        return {"WWW-Authenticate": "X-CIO-Signature"}


class ReportingWebhookOff(WebhookError):
    status_code = 404
    default_code = "reporting_webhook_off"
    default_detail = (
        "The reporting webhook is off: the site has no signing key (set CUSTOMERIO_REPORTING_SIGNING_KEYS)."
    )


class DatabaseBusy(WebhookError):
    """The database failed while recording: a 5xx, so that Customer.io retries."""

    status_code = 503
    default_code = "database_busy"
    default_detail = "The site's database failed; try again."


class DuplicateParameter(WebhookError):
    default_code = "duplicate_parameter"

    def __init__(self, name: str):
        super().__init__(f"The query string names '{name}' more than once: send it once.")


class NoAction(WebhookError):
    default_code = "no_action"
    default_detail = "No Action Specified"  # WP Fusion's words


class UnknownAction(WebhookError):
    default_code = "unknown_action"


class InvalidPayload(WebhookError):
    default_code = "invalid_payload"
    default_detail = "The body is neither JSON nor a form."


class PayloadTooLarge(WebhookError):
    status_code = 413
    default_code = "payload_too_large"

    def __init__(self):
        super().__init__(f"The body is larger than {settings.WEBHOOK_MAX_BODY_BYTES} bytes.")


class LengthRequired(WebhookError):
    status_code = 411
    default_code = "length_required"
    default_detail = (
        "This server cannot read a chunked body: send Content-Length (production's gunicorn reads chunked bodies)."
    )


class NoContact(WebhookError):
    default_code = "no_contact"
    default_detail = 'No contact in the request: send {"email": "{{customer.email}}", "cio_id": "{{customer.cio_id}}"}.'


class InvalidContact(WebhookError):
    default_code = "invalid_contact"


class MethodNotAllowed(WebhookError):
    status_code = 405
    default_code = "method_not_allowed"

    def __init__(self, method: str, allowed: str = "POST"):
        self.allowed = allowed
        super().__init__(f"Method {method!r} is not allowed: use POST.")

    def headers(self) -> dict:
        return {"Allow": self.allowed}


class InternalError(WebhookError):
    status_code = 500
    default_code = "internal_error"
    default_detail = "The site failed to process this webhook."


class DatabaseUnavailable(WebhookError):
    """The database cannot be reached (a restart, a failover): Customer.io retries a 5xx, and by then it may be back."""

    status_code = 503
    default_code = "database_unavailable"
    default_detail = "The site cannot reach its database just now; try again shortly."

    def headers(self) -> dict:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


class BadRequest(WebhookError):
    default_code = "bad_request"
    default_detail = "The request could not be read (too many query parameters or form fields)."


class ApiError(WebhookError):
    """Another DRF exception reaching the webhook's handler, in the project's shape with its own status, code and
    headers."""

    def __init__(self, exc: drf.APIException):
        self.status_code = exc.status_code
        self.default_code = _first(exc.get_codes()) or "error"
        self.extra_headers = {}
        if getattr(exc, "auth_header", None):
            self.extra_headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            self.extra_headers["Retry-After"] = str(math.ceil(exc.wait))
        super().__init__(str(_first(exc.detail)))

    def headers(self) -> dict | None:
        return self.extra_headers or None


def _first(detail):
    """The first message (or code) of DRF's nested error details."""
    while isinstance(detail, dict | list) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return detail


def _translated(exc: Exception, django_request) -> WebhookError:
    if isinstance(exc, WebhookError):
        return exc
    if isinstance(exc, SuspiciousOperation):  # Django's refusal of a malformed request: the caller's to fix
        return BadRequest()
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.APIException):
        return ApiError(exc)
    if database_unavailable(exc):
        # Not a defect: one log line for the whole outage (webhooks.outages), and no error report per request.
        outage.met(exc)
        return DatabaseUnavailable()
    # A defect: reported as Django reports an unhandled exception (the django.request ERROR line with its
    # traceback, which AdminEmailHandler mails; got_request_exception, which error trackers hook), then answered
    # 500 in JSON rather than with an HTML page.
    if django_request is not None:
        got_request_exception.send(sender=None, request=django_request)
    request_logger.error(
        "Internal Server Error: %s",
        getattr(django_request, "path", "?"),
        exc_info=exc,
        extra={"status_code": 500, "request": django_request},
    )
    return InternalError()


def handle_exception(exc: Exception, context: dict) -> Response:
    """The webhook view's exception handler (CustomerIOWebhookView.get_exception_handler; the site's other DRF
    views keep DRF's own): every exception as the project's JSON answer. A client error on a request that had the
    right key is also stored and logged, for the site admin to see (the view's `record_invalid_request`); one
    without the key is only counted (webhooks.intake.refusals)."""
    view = context.get("view")
    request = context.get("request")
    error = _translated(exc, getattr(request, "_request", None))
    if view is not None and hasattr(view, "record_invalid_request"):
        view.record_invalid_request(request, error)
    set_rollback()  # as DRF's own handler: an ATOMIC_REQUESTS transaction is not committed half done
    response = Response(error.answer(), status=error.status_code, headers=error.headers())
    if isinstance(error, InternalError | DatabaseUnavailable):
        # Reported above, with its traceback; or, for the database, once for the whole outage (webhooks.outages).
        response._has_been_logged = True
    return response
