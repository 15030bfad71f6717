"""Customer.io's reporting webhook: POST /webhooks/customerio/reporting/, one message event per request (sent,
delivered, opened, clicked, bounced, ...). A DRF view beside the journey webhook's, each concern in DRF's slot:
the signature (webhooks.intake.signatures: authentication, permission, and the journey webhook's refused-request
throttle), the JSON body (JsonObjectParser), the project's JSON errors (webhooks.intake.exceptions).

It does HTTP only: check the signature on the raw body, read the event into row values, store it with one INSERT
(webhooks.message_events.recording: once per event_id, so Customer.io's retries store nothing more), wake the worker
at most now and then, answer. Linking the event to a user, reactions and the signal are the worker's
(webhooks.message_events.processing). Without CUSTOMERIO_REPORTING_SIGNING_KEYS the endpoint is off: 404, nothing
read, nothing counted.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from users.access import never_locked
from users.models import ActivityLog
from users.services.activity import log_activity

from ..message_events import recording, waking
from ..message_events.fields import InvalidEvent, event_values
from ..metrics import counters as metrics
from . import refusals
from .client_address import client_ip
from .exceptions import (
    DatabaseBusy,
    InvalidPayload,
    MethodNotAllowed,
    ReportingWebhookOff,
    TooManyRefusedRequests,
    WebhookError,
)
from .lean import LeanAPIView
from .middleware import skips_site_middleware
from .negotiation import WebhookNegotiation
from .parsers import JsonObjectParser, refuse_declared_oversize
from .signatures import (
    REPORTING,
    HasValidSignature,
    RefusedSignatureThrottle,
    SignatureAuthentication,
    ValidSignature,
    signature_sent,
)
from .throttling import REFUSAL_COUNTED

logger = logging.getLogger(__name__)

# A signed event the site cannot read is the site's to fix (Customer.io changed its format?): one activity line a
# minute per process says so, not one per event.
UNREADABLE_NOTICE_SECONDS = 60


class CustomerIOReportingView(LeanAPIView):
    authentication_classes = [SignatureAuthentication]
    permission_classes = [HasValidSignature]
    throttle_classes = [RefusedSignatureThrottle]
    parser_classes = [JsonObjectParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = WebhookNegotiation
    http_method_names = ["post"]  # Customer.io posts; anything else gets the JSON 405

    @property
    def default_response_headers(self):
        return {"X-Frame-Options": settings.X_FRAME_OPTIONS}

    def initial(self, request, *args, **kwargs):
        # As the journey webhook: the method first; then, unlike it, whether the endpoint is on at all; the declared
        # size before the body is read (the signature needs the whole body); then the signature, counted and
        # throttled when it fails (DRF's order would refuse before the throttle saw it), then the permission.
        if request.method.lower() not in self.http_method_names:
            self.http_method_not_allowed(request)
        if not settings.CUSTOMERIO_REPORTING_SIGNING_KEYS:
            raise ReportingWebhookOff()
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        refuse_declared_oversize(request._request)
        self.perform_authentication(request)
        self.check_throttles(request)
        self.check_permissions(request)

    def throttled(self, request, wait):
        raise TooManyRefusedRequests(wait, credentials="signature")

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise MethodNotAllowed(request.method, "POST")

    def dispatch(self, request, *args, **kwargs):
        self.started = time.monotonic()
        return super().dispatch(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        error = response.data.get("error", "") if isinstance(getattr(response, "data", None), dict) else ""
        signed = isinstance(getattr(request, "_auth", None), ValidSignature)
        refused = 400 <= response.status_code < 500 and not signed and error != ReportingWebhookOff.default_code
        if refused:
            _count_as_refused(request._request)
            response._has_been_logged = True  # counted per address and minute instead (webhooks.intake.refusals)
            request._request.META["wpfusion.refused"] = True  # gunicorn.conf.py's access log skips it
        reason = metrics.refusal_reason(error, key_sent=True) if refused else None
        metrics.webhook_answered(metrics.REPORTING, response.status_code, time.monotonic() - self.started, reason)
        return response

    def post(self, request, *args, **kwargs):
        try:
            values = event_values(request.data)
        except InvalidEvent as invalid:
            raise InvalidPayload(str(invalid)) from None
        try:
            new = recording.record(values)
        except DatabaseError as failure:
            logger.warning("Could not record message event %s: %s", values["event_id"], failure)
            raise DatabaseBusy() from None
        if not new:
            return Response({"status": "ok", "duplicate": True})
        waking.wake_worker_soon()
        return Response({"status": "ok"})

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(getattr(self.request, "_auth", None), ValidSignature) and 400 <= response.status_code < 500:
            _notice_unreadable(exc)
        return response


def _count_as_refused(django_request) -> None:
    if getattr(django_request, REFUSAL_COUNTED, False):
        return  # the throttle counted it
    setattr(django_request, REFUSAL_COUNTED, True)
    refusals.refuse(client_ip(django_request), REPORTING, key_sent=signature_sent(django_request))


def _notice_unreadable(exc: Exception) -> None:
    """A signed request refused for its body: Customer.io sent it, so the site admin should know."""
    detail = str(exc.detail) if isinstance(exc, WebhookError) else type(exc).__name__
    try:
        first = cache.add("webhooks:reporting-unreadable", 1, UNREADABLE_NOTICE_SECONDS)
    except Exception:  # the cache is down: the Python log line below still says it
        first = True
    logger.warning("Refused a signed reporting webhook: %s", detail)
    if first:
        log_activity(
            ActivityLog.Source.WEBHOOK,
            f"Refused a signed Customer.io reporting webhook: {detail} (more in the next minute are only logged).",
            level=ActivityLog.Level.WARNING,
        )


reporting_view = skips_site_middleware(never_locked(CustomerIOReportingView.as_view()))
