"""The Customer.io webhook endpoint. HTTP only: check the key, parse, record, hand over to the account services in
`users.services.accounts`, answer in JSON."""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.debug import sensitive_variables
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from cio.client import deadline_in
from settings_app.models import WebhookSettings
from settings_app.services import WEBHOOK_ACTIONS
from users.models import ActivityLog
from users.redaction import redact, without_secrets
from users.services import accounts
from users.services.accounts import secret_attribute_names
from users.services.activity import log_activity

from . import deliveries, queue
from .client_address import client_ip
from .models import WebhookDelivery
from .parsing import WebhookInputError, WebhookOptions, find_contact, is_true, parse_body, person_from_body
from .processing import Outcome, run_action

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status
# How long a synchronous processing holds its delivery before a retry may take it over (it must have died).
SYNC_LEASE = timedelta(seconds=60)
IN_PROGRESS_RETRY_AFTER = "5"


class CustomerIOWebhookView(APIView):
    # Customer.io may send URLs with user:pass@ in them; the access key is the only authentication here.
    authentication_classes = []
    permission_classes = []
    renderer_classes = [JSONRenderer]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get(self, request):
        return self.handle_webhook(request)

    post = put = patch = delete = get

    @sensitive_variables()
    def handle_webhook(self, request):
        started = time.monotonic()
        django_request = request._request
        query = {key: django_request.GET.get(key) for key in django_request.GET}
        fields = self._delivery_fields(django_request, query)

        too_large = self._too_large(django_request)
        if too_large:
            return self._refuse(fields, WebhookInputError(413, "payload_too_large", too_large))
        try:
            body = parse_body(self._read_body(django_request))
            payload_error = None
        except WebhookInputError as exc:
            body, payload_error = None, exc
        site_settings = WebhookSettings.cached()
        fields["action"] = str(query.get("wpf_action") or "")[:32]

        if not constant_time_compare(query.get("access_key") or "", site_settings.access_key):
            log_activity(
                ActivityLog.Source.WEBHOOK,
                f"Webhook refused: invalid access key (from {fields['remote_ip'] or 'unknown address'})",
                level=ActivityLog.Level.ERROR,
                context={"action": fields["action"], "remote_ip": fields["remote_ip"]},
            )
            return self._refuse(fields, WebhookInputError(403, "invalid_access_key", "Invalid Access Key"))
        # Stored only once the key is right: nobody without it can fill the database with bodies.
        fields["body"] = redact(body, also=secret_attribute_names(site_settings)) if body is not None else None
        action = fields["action"]
        if not action:
            return self._refuse(fields, WebhookInputError(400, "no_action", "No Action Specified"))
        if action not in WEBHOOK_ACTIONS:
            detail = f"Unknown action '{action}': use one of {', '.join(WEBHOOK_ACTIONS)}."
            return self._refuse(fields, WebhookInputError(400, "unknown_action", detail))
        if payload_error:
            return self._refuse(fields, payload_error)
        contact = None
        if action != "test":
            try:
                contact = find_contact(body, query)
            except WebhookInputError as exc:
                return self._refuse(fields, exc)
            fields["contact"], fields["contact_type"] = contact.value, contact.kind
            fields["contact_key"] = contact.lock_key

        key = deliveries.dedup_key(fields["idempotency_key"], fields["cio_delivery_id"])
        if action != "test" and (is_true(query.get("async")) or site_settings.process_in_background):
            return self._accept_for_background(fields, key)
        opened = deliveries.open_delivery(fields, key, SYNC_LEASE)
        if opened.state == "done":
            return Response({**(opened.delivery.result or {}), "duplicate": True}, status=200)
        if opened.state == "busy":
            detail = "This delivery is still being processed; try again shortly."
            return Response(
                {"error": "in_progress", "detail": detail},
                status=503,
                headers={"Retry-After": IN_PROGRESS_RETRY_AFTER},
            )
        return self._process(opened.delivery, action, contact, body, query, started)

    @sensitive_variables()
    def _process(self, delivery, action, contact, body, query, started):
        if action == "test":
            outcome = Outcome(Status.SUCCEEDED, 200, {"status": "ok", "action": "test"})
        else:
            options = WebhookOptions.from_request(body, query)
            request = accounts.ActionRequest(
                contact=contact,
                role=options.role,
                send_notification=options.send_notification,
                deadline=deadline_in(settings.WEBHOOK_SYNC_DEADLINE),
                delivery=delivery,
                person=person_from_body(body, contact),
            )
            outcome = run_action(action, request)
        deliveries.finish(
            delivery,
            status=outcome.status,
            http_status=outcome.http_status,
            result=outcome.result,
            started=started,
            now=time.monotonic(),
            error=outcome.error,
            user=outcome.user,
            traceback=outcome.traceback,
        )
        return Response(outcome.result, status=outcome.http_status)

    @staticmethod
    def _accept_for_background(fields, key):
        """Queued mode: record and enqueue in one transaction, answer at once, call nobody."""
        with transaction.atomic():
            opened = deliveries.open_delivery(fields, key, lease=None)
            if opened.state in ("new", "again"):
                queue.enqueue(opened.delivery)
        if opened.state == "done":
            return Response({**(opened.delivery.result or {}), "duplicate": True}, status=200)
        answer = {"status": "queued", "delivery_id": opened.delivery.pk}
        if opened.state == "busy":
            answer["duplicate"] = True
        return Response(answer, status=200)

    @staticmethod
    def _refuse(fields, error: WebhookInputError):
        deliveries.record_invalid(fields, error.status, error.code, error.detail)
        return Response({"error": error.code, "detail": error.detail}, status=error.status)

    # Request details -----------------------------------------------------------------------------------------

    @staticmethod
    def _delivery_fields(django_request, query) -> dict:
        headers = django_request.headers
        return {
            "query": without_secrets(query),
            "remote_ip": client_ip(django_request),
            "cio_delivery_id": (headers.get("x-cio-delivery-id") or "")[:200],
            "idempotency_key": (headers.get("x-cio-idempotency-key") or "")[:200],
            "body": None,
        }

    @staticmethod
    def _too_large(django_request) -> str:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        try:
            length = int(django_request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return f"The body is larger than {limit} bytes."
        return ""

    @staticmethod
    def _read_body(django_request) -> bytes:
        # Read at most one byte past the limit, so a body without Content-Length cannot make us read it all.
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        raw = django_request.read(limit + 1)
        if len(raw) > limit:
            raise WebhookInputError(413, "payload_too_large", f"The body is larger than {limit} bytes.")
        return raw

    def handle_exception(self, exc):
        if isinstance(exc, WebhookInputError):
            return Response({"error": exc.code, "detail": exc.detail}, status=exc.status)
        return super().handle_exception(exc)


webhook_view = CustomerIOWebhookView.as_view()


def home(request):
    """The site root: Customer.io's webhook when the request looks like one (WP Fusion's URL format), else the
    site's ordinary home page."""
    is_webhook = "wpf_action" in request.GET or "access_key" in request.GET
    if is_webhook or request.method not in ("GET", "HEAD"):
        return webhook_view(request)
    return HttpResponse(
        '<!doctype html><title>Welcome</title><h1>Welcome</h1><p><a href="/accounts/login/">Log in</a></p>',
        content_type="text/html; charset=utf-8",
    )
