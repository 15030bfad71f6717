"""The Customer.io webhook endpoint: a DRF view that does HTTP only — authenticate, throttle refusals, parse and
validate, record, hand over to the action registry (webhooks.actions), answer. Each concern sits in DRF's own slot:
AccessKeyAuthentication, RefusedRequestThrottle, the parsers, WebhookNegotiation, WebhookRequestSerializer and the
exception handler (webhooks.intake.exceptions).

What DRF costs, and why it is still used: DRF's request and response layer costs about 0.1 ms of CPU a request
(measured when this endpoint was a plain Django view, bench/accept.py). The classes here are lean
(webhooks.intake.lean: one shared instance of each stateless class, no metadata, no versioning, no format suffixes),
and webhook requests skip the site middleware they do not use (webhooks.intake.middleware, about 60 us): in one
process a queued accept costs the same CPU as the plain view did with the whole middleware list, and under gunicorn
less (docs/performance.md).
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from settings_app.access_keys import KeyMatch
from settings_app.models import WebhookSettings
from settings_app.redaction import redact, without_secrets
from users.access import never_locked
from users.services.accounts import secret_attribute_names
from users.text import clean_text

from .. import deliveries
from ..metrics import counters as metrics
from ..outages import database_unavailable
from ..payload import person_from_body
from ..processing import request_for_delivery, run_action
from ..queue import leases
from ..queue.enqueue import open_queued
from . import answers, refusals
from .authentication import AccessKeyAuthentication, HasAccessKey, presented_keys
from .client_address import client_ip
from .exceptions import (
    InvalidPayload,
    LengthRequired,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRefusedRequests,
    WebhookError,
)
from .lean import LeanAPIView
from .middleware import skips_site_middleware
from .negotiation import WebhookNegotiation
from .pages import BrowserPageRenderer
from .parsers import JsonOrFormParser, LimitedMultiPartParser, refuse_declared_oversize
from .serializers import (
    ACTION_LENGTH,
    WebhookInput,
    WebhookRequestSerializer,
    clean_query,
    delivery_header,
    requested_action,
)
from .throttling import REFUSAL_COUNTED, RefusedRequestThrottle

logger = logging.getLogger(__name__)

# How long a synchronous processing holds its delivery before a retry may take it over (it must have died).
SYNC_LEASE = timedelta(seconds=60)


class CustomerIOWebhookView(LeanAPIView):
    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [HasAccessKey]
    throttle_classes = [RefusedRequestThrottle]
    parser_classes = [JsonOrFormParser, LimitedMultiPartParser]
    renderer_classes = [JSONRenderer, BrowserPageRenderer]
    content_negotiation_class = WebhookNegotiation
    # Every method a Customer.io webhook action can send (its method menu), as WP Fusion answers them all; HEAD and
    # OPTIONS for monitors and browsers. Anything else gets the JSON 405.
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    @property
    def default_response_headers(self):
        # Not DRF's Allow on every answer: a stranger learns the methods from OPTIONS or a 405, nothing more.
        # X-Frame-Options as XFrameOptionsMiddleware (skipped for the webhook) sets it on every other page.
        headers = {"X-Frame-Options": settings.X_FRAME_OPTIONS}
        if self.request.method in ("GET", "HEAD"):
            headers["Vary"] = "Accept"  # a browser may get the page where other clients get JSON
        return headers

    def initial(self, request, *args, **kwargs):
        # DRF's order is authentication, permissions, throttles: a wrong key would be refused (403) before the
        # throttle ever saw it. Here the throttle counts the refusal first and answers 429 past the limit; the
        # permission then answers the rest 403. A valid key passes both without being counted.
        method = request.method.lower()
        if method not in self.http_method_names:
            self.http_method_not_allowed(request)  # before the key, as for any URL: 405 says nothing about the key
        if method == "options":
            return  # answered without a key: it says only which methods exist
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        self.perform_authentication(request)
        self.check_throttles(request)
        self.check_permissions(request)

    def throttled(self, request, wait):
        raise TooManyRefusedRequests(wait)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise MethodNotAllowed(request.method, ", ".join(m.upper() for m in self.http_method_names))

    def options(self, request, *args, **kwargs):
        # Say only which methods exist: nothing that describes the endpoint to a stranger.
        return HttpResponse(status=204, headers={"Allow": ", ".join(m.upper() for m in self.http_method_names)})

    def get(self, request, *args, **kwargs):
        return self.handle_webhook(request)

    post = put = patch = delete = get

    def dispatch(self, request, *args, **kwargs):
        self.started = time.monotonic()  # for webhook_request_duration_seconds: every answer, refusals too
        return super().dispatch(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.get("Content-Type", "").startswith("text/html"):
            response["Cache-Control"] = "no-store"  # the page's URL may hold the key
        refused = 400 <= response.status_code < 500
        if refused and not isinstance(_checked_key(request), KeyMatch):
            _count_as_refused(request._request)
            # Counted and logged per address per minute (webhooks.intake.refusals): Django's "Forbidden: /" line
            # and gunicorn's access line per request would let a flood fill the disk through the logs.
            response._has_been_logged = True
            request._request.META["wpfusion.refused"] = True  # gunicorn.conf.py's access log skips it
        _count_answer(request._request, response, time.monotonic() - self.started, refused)
        return response

    # The webhook -------------------------------------------------------------------------------------------------

    @sensitive_variables()
    def handle_webhook(self, request):
        started = time.monotonic()
        django_request = request._request
        refuse_declared_oversize(django_request)
        query = clean_query(django_request.GET)
        # The action before the body: "No Action Specified" whatever the body holds, as WP Fusion answers.
        action = requested_action(query)
        serializer = WebhookRequestSerializer(
            data=request.data, context={"action": action, "query": query, "request": django_request}
        )
        serializer.is_valid(raise_exception=True)
        intake: WebhookInput = serializer.validated_data
        site_settings = WebhookSettings.cached()
        fields = _delivery_fields(django_request, intake, request.auth, site_settings)
        if leases.has_abandoned():  # this process's processings cut off by a database outage, now it answers
            leases.release_abandoned()
        if not action.touches_user:
            return self._answer_touching_nobody(intake, fields, started)
        if intake.in_background or site_settings.process_in_background:
            # Record and enqueue in one commit (webhooks.queue.task_rows), answer at once, call nobody.
            opened = open_queued(fields, intake.dedup_key)
            return answers.queued_answer(opened)
        opened = deliveries.open_delivery(fields, intake.dedup_key, SYNC_LEASE)
        return answers.repeated_answer(opened) or self._process(opened.delivery, intake, started)

    @sensitive_variables()
    def _process(self, delivery, intake: WebhookInput, started: float) -> Response:
        # The request's own body and query (the stored copies have password fields masked). Customer.io waits 4 s
        # from when it sent the request: the deadline counts from its arrival, so that time spent waiting for the
        # database (a restart) is not added to the time allowed for Customer.io.
        action_request = request_for_delivery(
            delivery,
            intake.contact,
            person=person_from_body(intake.body, intake.contact),
            deadline_seconds=max(0.0, settings.WEBHOOK_SYNC_DEADLINE - (time.monotonic() - self.started)),
            body=intake.body,
            query=intake.query,
            may_reuse=True,
        )
        outcome = None
        try:
            outcome = run_action(intake.action, action_request)
            deliveries.record_outcome([delivery], outcome, duration_ms=_elapsed_ms(started))
        except Exception as error:
            if database_unavailable(error):
                # Its outcome could not be written: as soon as the database answers this process again, written
                # then (a success: its effects are committed) or the delivery queued again — rather than held
                # `processing` (Customer.io's retries answered "in progress") until the lease runs out.
                hold = leases.Hold([delivery.pk], {delivery.lease_expires_at})
                if outcome is not None:
                    leases.keep_outcome([delivery.pk], outcome, _elapsed_ms(started), hold)
                leases.abandon(hold)
            raise
        return answers.outcome_answer(outcome)

    def _answer_touching_nobody(self, intake: WebhookInput, fields: dict, started: float) -> Response:
        """An action that touches nobody (`test`): run first, then recorded with its outcome in one INSERT."""
        outcome = run_action(intake.action, None)
        opened = deliveries.record_answered(fields, intake.dedup_key, outcome, duration_ms=_elapsed_ms(started))
        return answers.repeated_answer(opened) or answers.outcome_answer(outcome)

    # Refusals of requests that had the key ----------------------------------------------------------------------

    def record_invalid_request(self, request, error: WebhookError) -> None:
        """Called by the exception handler for every error. A client error on a request with a valid key is stored
        and logged (a journey sending a bad request is the admin's to fix); a request without one is only counted
        (finalize_response), since anyone can send it."""
        key = _checked_key(request)
        if not isinstance(key, KeyMatch):
            return
        if isinstance(error, MethodNotAllowed) or error.status_code >= 500:
            return
        django_request = request._request
        query = {clean_text(name): clean_text(value) for name, value in django_request.GET.items()}
        fields = {
            "query": without_secrets(query),
            "remote_ip": client_ip(django_request),
            "cio_delivery_id": delivery_header(django_request, "x-cio-delivery-id"),
            "idempotency_key": delivery_header(django_request, "x-cio-idempotency-key"),
            "action": str(query.get("wpf_action") or "")[:ACTION_LENGTH],
            "access_key_fingerprint": key.fingerprint,
            "body": _stored_body(_body_if_readable(request, error), WebhookSettings.cached()),
        }
        try:
            deliveries.record_invalid(fields, error.status_code, error.code, str(error.detail), log=True)
        except DatabaseError as failure:  # the answer still goes out; the refusal is in the log at least
            logger.warning("Could not record a refused webhook (%s %s): %s", error.status_code, error.code, failure)


def _checked_key(request) -> KeyMatch | None:
    """The key authentication matched, without authenticating now: an error raised before authentication (a
    405, a malformed query) must not run it from the exception handler."""
    return getattr(request, "_auth", None) if request is not None else None


def _count_as_refused(django_request) -> None:
    if getattr(django_request, REFUSAL_COUNTED, False):
        return  # the throttle counted it
    setattr(django_request, REFUSAL_COUNTED, True)
    try:
        action, key_sent = django_request.GET.get("wpf_action"), bool(django_request.GET.get("access_key"))
    except SuspiciousOperation:
        action, key_sent = "", False
    refusals.refuse(client_ip(django_request), action, key_sent=key_sent)


def _count_answer(django_request, response, seconds: float, refused: bool) -> None:
    """Every answer for Prometheus (webhooks.metrics.counters): its action (from a fixed set, whatever was sent),
    status and time, and why a refused one was refused."""
    try:
        action = metrics.action_label(django_request.GET.get("wpf_action"))
    except SuspiciousOperation:
        action = metrics.UNKNOWN
    reason = None
    if refused:
        code = response.data.get("error", "") if isinstance(getattr(response, "data", None), dict) else ""
        key_sent = code == "invalid_access_key" and bool(_presented_keys(django_request))
        reason = metrics.refusal_reason(code, key_sent=key_sent)
    metrics.webhook_answered(action, response.status_code, seconds, reason)


def _presented_keys(django_request) -> list[str]:
    try:
        return presented_keys(django_request)
    except SuspiciousOperation:
        return []


def _body_if_readable(request, error: WebhookError) -> dict | None:
    """The parsed body for the record of a refused request, when it was or can be parsed: none for a refusal of
    the body itself (after a parse error DRF leaves an empty QueryDict in its place)."""
    if isinstance(error, InvalidPayload | PayloadTooLarge | LengthRequired):
        return None
    try:
        return request.data if isinstance(request.data, dict) else None
    except Exception:  # the refusal is about the body: it is stored without one
        return None


def _stored_body(body: dict | None, site_settings) -> dict | None:
    # Only ever stored for a request with the key: nobody without it can fill the database with bodies.
    return redact(body, also=secret_attribute_names(site_settings)) if body is not None else None


def _delivery_fields(django_request, intake: WebhookInput, key: KeyMatch, site_settings) -> dict:
    fields = {
        "query": without_secrets(intake.query),
        "remote_ip": client_ip(django_request),
        "cio_delivery_id": intake.cio_delivery_id,
        "idempotency_key": intake.idempotency_key,
        "action": intake.action.name,
        "access_key_fingerprint": key.fingerprint,
        "body": _stored_body(intake.body, site_settings),
    }
    if intake.contact is not None:
        fields.update(
            contact=intake.contact.value, contact_type=intake.contact.kind, contact_key=intake.contact.lock_key
        )
    return fields


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


webhook_view = skips_site_middleware(never_locked(CustomerIOWebhookView.as_view()))


def is_webhook_at_root(request) -> bool:
    """Whether a request for the site root is Customer.io's webhook (WP Fusion's URL format) rather than a visit.
    A query string Django refuses to read is answered by the webhook, in JSON."""
    try:
        query = request.GET
    except SuspiciousOperation:
        return True
    return "wpf_action" in query or "access_key" in query or request.method not in ("GET", "HEAD")


# Access rules never cover the webhook, even a rule on "/": Customer.io must always reach it.
@skips_site_middleware(when=is_webhook_at_root)
@never_locked(when=is_webhook_at_root)
def home(request):
    """The site root: Customer.io's webhook when the request looks like one, else the site's ordinary home page."""
    if is_webhook_at_root(request):
        return webhook_view(request)
    return HttpResponse(
        '<!doctype html><title>Welcome</title><h1>Welcome</h1><p><a href="/accounts/login/">Log in</a></p>',
        content_type="text/html; charset=utf-8",
    )
