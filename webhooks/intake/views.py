"""The Customer.io webhook endpoint: a DRF view that does HTTP only — authenticate, throttle refusals, parse and
validate, record, hand over to the action registry (webhooks.actions), answer. Each concern sits in DRF's own slot:
AccessKeyAuthentication, RefusedRequestThrottle, the parsers, WebhookNegotiation, WebhookRequestSerializer and the
exception handler (webhooks.intake.exceptions).

What DRF costs here, and why it is still used: DRF's request and response layer cost about 0.1 ms of CPU per request
in a measurement of the earlier plain-Django view (bench/accept.py) — a third of what accepting a queued webhook
costs beyond the bare INSERT. The classes below are lean (one instance of each stateless class per process, no
metadata, no versioning), and webhook requests skip the site middleware they do not use
(webhooks.intake.middleware): together that buys back more than DRF costs. The README's Performance section has
the figures.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from settings_app.access_keys import KeyMatch
from settings_app.models import WebhookSettings
from settings_app.redaction import redact, without_secrets
from users.access import never_locked
from users.services.accounts import secret_attribute_names
from users.text import clean_text

from .. import deliveries
from ..payload import person_from_body
from ..processing import request_for_delivery, run_action
from ..queue.enqueue import open_queued
from . import answers
from .authentication import AccessKeyAuthentication, HasAccessKey
from .client_address import client_ip
from .exceptions import (
    InvalidAccessKey,
    LengthRequired,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRefusedRequests,
    WebhookError,
    handle_exception,
)
from .middleware import skips_site_middleware
from .negotiation import WebhookNegotiation
from .pages import ConnectedPageRenderer
from .parsers import JsonOrFormParser, LimitedMultiPartParser
from .serializers import ACTION_LENGTH, WebhookInput, WebhookRequestSerializer, clean_query, requested_action
from .throttling import RefusedRequestThrottle

# How long a synchronous processing holds its delivery before a retry may take it over (it must have died).
SYNC_LEASE = timedelta(seconds=60)

# Stateless: one instance each per process instead of one per request (DRF builds them per request by default).
_PARSERS = [JsonOrFormParser(), LimitedMultiPartParser()]
_AUTHENTICATORS = [AccessKeyAuthentication()]
_PERMISSIONS = [HasAccessKey()]
_NEGOTIATOR = WebhookNegotiation()


class CustomerIOWebhookView(APIView):
    authentication_classes = [AccessKeyAuthentication]
    permission_classes = [HasAccessKey]
    throttle_classes = [RefusedRequestThrottle]
    parser_classes = [JsonOrFormParser, LimitedMultiPartParser]
    renderer_classes = [JSONRenderer, ConnectedPageRenderer]
    content_negotiation_class = WebhookNegotiation
    metadata_class = None
    format_kwarg = None  # no format suffixes: the answer is JSON (or the browser page), whatever the URL
    # Every method a Customer.io webhook action can send (its method menu), as WP Fusion answers them all; HEAD and
    # OPTIONS for monitors and browsers. Anything else gets the JSON 405.
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_parsers(self):
        return _PARSERS

    def get_authenticators(self):
        return _AUTHENTICATORS

    def get_permissions(self):
        return _PERMISSIONS

    def get_content_negotiator(self):
        return _NEGOTIATOR

    def get_exception_handler(self):
        return handle_exception

    @property
    def default_response_headers(self):
        # Not DRF's Allow on every answer: a stranger learns the methods from OPTIONS or a 405, nothing more.
        # X-Frame-Options as XFrameOptionsMiddleware (skipped for the webhook) sets it on every other page.
        return {"Vary": "Accept", "X-Frame-Options": "DENY"}

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

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code in (InvalidAccessKey.status_code, TooManyRefusedRequests.status_code):
            # Refusals are counted and logged per address per minute (webhooks.intake.refusals); Django's own
            # "Forbidden: /" line per request would let a flood fill the disk through the log.
            response._has_been_logged = True
            request._request.META["wpfusion.refused"] = True  # gunicorn's access log skips it (gunicorn.conf.py)
        return response

    # The webhook -------------------------------------------------------------------------------------------------

    @sensitive_variables()
    def handle_webhook(self, request):
        started = time.monotonic()
        django_request = request._request
        _refuse_declared_oversize(django_request)
        query = clean_query(django_request.GET)
        # The action before the body: "No Action Specified" whatever the body holds, as WP Fusion answers.
        action = requested_action(query)
        serializer = WebhookRequestSerializer(
            data=request.data, context={"action": action, "query": query, "headers": django_request.headers}
        )
        serializer.is_valid(raise_exception=True)
        intake: WebhookInput = serializer.validated_data
        site_settings = WebhookSettings.cached()
        fields = _delivery_fields(django_request, intake, request.auth, site_settings)
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
        # The request's own body and query (the stored copies have password fields masked).
        action_request = request_for_delivery(
            delivery,
            intake.contact,
            person=person_from_body(intake.body, intake.contact),
            deadline_seconds=settings.WEBHOOK_SYNC_DEADLINE,
            body=intake.body,
            query=intake.query,
            may_reuse=True,
        )
        outcome = run_action(intake.action, action_request)
        deliveries.record_outcome([delivery], outcome, duration_ms=_elapsed_ms(started))
        return answers.outcome_answer(outcome)

    def _answer_touching_nobody(self, intake: WebhookInput, fields: dict, started: float) -> Response:
        """An action that touches nobody (`test`): run first, then recorded with its outcome in one INSERT."""
        outcome = run_action(intake.action, None)
        opened = deliveries.record_answered(fields, intake.dedup_key, outcome, duration_ms=_elapsed_ms(started))
        return answers.repeated_answer(opened) or answers.outcome_answer(outcome)

    # Refusals of requests that had the key ----------------------------------------------------------------------

    def record_refusal(self, request, error: WebhookError) -> None:
        """Called by the exception handler for every error. A client error on a request with a valid key is stored
        and logged (a journey sending a bad request is the admin's to fix); a request without one is only counted
        (the throttle did), since anyone can send it."""
        if request is None or not isinstance(request.auth, KeyMatch):
            return
        if isinstance(error, InvalidAccessKey | TooManyRefusedRequests | MethodNotAllowed) or error.status_code >= 500:
            return
        django_request = request._request
        query = {clean_text(key): clean_text(value) for key, value in django_request.GET.items()}
        fields = {
            "query": without_secrets(query),
            "remote_ip": client_ip(django_request),
            "cio_delivery_id": clean_text(django_request.headers.get("x-cio-delivery-id") or "")[:200],
            "idempotency_key": clean_text(django_request.headers.get("x-cio-idempotency-key") or "")[:200],
            "action": str(query.get("wpf_action") or "")[:ACTION_LENGTH],
            "access_key_fingerprint": request.auth.fingerprint,
            "body": _stored_body(_body_if_readable(request, error), WebhookSettings.cached()),
        }
        deliveries.record_invalid(fields, error.status_code, error.code, str(error.detail), log=True)


def _refuse_declared_oversize(django_request) -> None:
    """413 before reading a body whose Content-Length says it is too large (a chunked one is measured as read:
    webhooks.intake.framing gives it its length, or refuses it here on a server that cannot de-chunk it)."""
    if django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        raise LengthRequired()
    try:
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.WEBHOOK_MAX_BODY_BYTES:
        raise PayloadTooLarge()


def _body_if_readable(request, error: WebhookError) -> dict | None:
    """The parsed body for the record of a refused request, when it can be parsed (never an oversize one)."""
    if isinstance(error, PayloadTooLarge):
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
    """Whether a request for the site root is Customer.io's webhook (WP Fusion's URL format) rather than a visit."""
    return "wpf_action" in request.GET or "access_key" in request.GET or request.method not in ("GET", "HEAD")


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
