"""The Customer.io webhook endpoint. HTTP only: check the key, parse, record, hand over to the action's account
service (webhooks.actions), answer in JSON.

A plain Django view, not a DRF one: it reads and checks its body itself (parsing.parse_body), has no
authentication, permission, throttle or content negotiation for DRF to run, and answers JSON only. DRF's request and
response layer cost about 0.1 ms of CPU per request here — a third of what accepting a queued webhook costs beyond
the bare INSERT (bench/accept.py) — for nothing this endpoint uses.
"""

import json
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from settings_app.access_keys import match_access_key
from settings_app.models import WebhookSettings
from settings_app.redaction import redact, without_secrets
from users.access import never_locked
from users.services.accounts import secret_attribute_names
from users.text import clean_text

from . import deliveries, refused
from .actions import ACTIONS, get_action
from .client_address import client_ip
from .deliveries import OpenState
from .parsing import WebhookInputError, clean_query, find_contact, parse_body, presented_key
from .payload import is_true, person_from_body
from .processing import action_request, run_action
from .queue.enqueue import open_queued

logger = logging.getLogger(__name__)

# How long a synchronous processing holds its delivery before a retry may take it over (it must have died).
SYNC_LEASE = timedelta(seconds=60)
IN_PROGRESS_RETRY_AFTER = "5"


def json_answer(data, status: int = 200, headers: dict | None = None) -> HttpResponse:
    """A JSON answer, whatever Accept says (Customer.io reads nothing else): compact UTF-8, as DRF's JSONRenderer
    wrote it, with U+2028/U+2029 escaped for JavaScript readers."""
    text = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return HttpResponse(text.encode(), status=status, headers=headers, content_type="application/json")


@method_decorator(csrf_exempt, name="dispatch")
class CustomerIOWebhookView(View):
    # Customer.io may send URLs with user:pass@ in them; the access key is the only authentication here.
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get(self, request):
        try:
            return self.handle_webhook(request)
        except WebhookInputError as exc:
            return json_answer({"error": exc.code, "detail": exc.detail}, status=exc.status)

    post = put = patch = delete = get

    def options(self, request, *args, **kwargs):
        # Say only which methods exist: nothing that describes the endpoint to a stranger.
        return HttpResponse(status=204, headers={"Allow": ", ".join(m.upper() for m in self.http_method_names)})

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m.upper() for m in self.http_method_names)
        detail = f"Method {request.method!r} is not allowed: use POST."
        return json_answer({"error": "method_not_allowed", "detail": detail}, status=405, headers={"Allow": allowed})

    @sensitive_variables()
    def handle_webhook(self, django_request):
        started = time.monotonic()
        query = clean_query(django_request.GET)
        # The key first, before the body is read: a request without it costs a comparison and a counter, no more.
        site_settings = WebhookSettings.cached()
        # Never bound to a local here: the debug 500 page shows this frame's variables.
        key_fingerprint = match_access_key(presented_key(django_request, query), site_settings)
        if key_fingerprint is None:
            return self._refuse_without_key(django_request, query)
        fields = self._delivery_fields(django_request, query)
        fields["action"] = str(query.get("wpf_action") or "")[:32]

        too_large = self._too_large(django_request)
        if too_large:
            return self._refuse(fields, WebhookInputError(413, "payload_too_large", too_large))
        try:
            body = parse_body(self._read_body(django_request))
            payload_error = None
        except WebhookInputError as exc:
            body, payload_error = None, exc
        fields["access_key_fingerprint"] = key_fingerprint
        # Stored only once the key is right: nobody without it can fill the database with bodies.
        fields["body"] = redact(body, also=secret_attribute_names(site_settings)) if body is not None else None
        if not fields["action"]:
            return self._refuse(fields, WebhookInputError(400, "no_action", "No Action Specified"))
        action = get_action(fields["action"])
        if action is None:
            detail = f"Unknown action '{fields['action']}': use one of {', '.join(ACTIONS)}."
            return self._refuse(fields, WebhookInputError(400, "unknown_action", detail))
        if payload_error:
            return self._refuse(fields, payload_error)
        contact = None
        if action.touches_user:
            try:
                contact = find_contact(body, query)
            except WebhookInputError as exc:
                return self._refuse(fields, exc)
            fields["contact"], fields["contact_type"] = contact.value, contact.kind
            fields["contact_key"] = contact.lock_key

        key = deliveries.dedup_key(fields["idempotency_key"], fields["cio_delivery_id"])
        if not action.touches_user:
            return self._answer_touching_nobody(action, fields, key, started)
        if is_true(query.get("async")) or site_settings.process_in_background:
            return self._accept_for_background(fields, key)
        opened = deliveries.open_delivery(fields, key, SYNC_LEASE)
        return self._answer_opened(opened) or self._process(opened.delivery, action, contact, body, query, started)

    @sensitive_variables()
    def _process(self, delivery, action, contact, body, query, started):
        # The request's own body (the stored copy has password fields masked).
        request = action_request(
            delivery,
            contact,
            person=person_from_body(body, contact),
            deadline_seconds=settings.WEBHOOK_SYNC_DEADLINE,
            body=body,
            query=query,
            may_reuse=True,
        )
        outcome = run_action(action, request)
        duration_ms = int((time.monotonic() - started) * 1000)
        deliveries.record_outcome([delivery], outcome, duration_ms=duration_ms)
        return json_answer(outcome.result, status=outcome.http_status)

    @staticmethod
    def _answer_touching_nobody(action, fields, key, started):
        """An action that touches nobody (`test`): run first, then recorded with its outcome in one INSERT."""
        outcome = run_action(action, None)
        duration_ms = int((time.monotonic() - started) * 1000)
        opened = deliveries.record_answered(fields, key, outcome, duration_ms=duration_ms)
        return CustomerIOWebhookView._answer_opened(opened) or json_answer(outcome.result, status=outcome.http_status)

    @staticmethod
    def _accept_for_background(fields, key):
        """Queued mode: record and enqueue in one commit (see webhooks.task_rows), answer at once, call nobody."""
        opened = open_queued(fields, key)
        if opened.state == OpenState.DONE:
            return json_answer({**(opened.delivery.result or {}), "duplicate": True}, status=200)
        answer = {"status": "queued", "delivery_id": opened.delivery_id}
        if opened.state == OpenState.BUSY:
            answer["duplicate"] = True
        return json_answer(answer, status=200)

    @staticmethod
    def _answer_opened(opened):
        """The answer to a retry of a delivery done or being processed; None when this request is to be processed."""
        if opened.state == OpenState.DONE:
            return json_answer({**(opened.delivery.result or {}), "duplicate": True}, status=200)
        if opened.state == OpenState.BUSY:
            detail = "This delivery is still being processed; try again shortly."
            return json_answer(
                {"error": "in_progress", "detail": detail},
                status=503,
                headers={"Retry-After": IN_PROGRESS_RETRY_AFTER},
            )
        return None

    @staticmethod
    def _refuse_without_key(django_request, query):
        """403, or 429 past the refused-request throttle: counted (webhooks.refused), never stored one by one."""
        key_sent = bool(presented_key(django_request, query))
        refusal = refused.refuse(client_ip(django_request), query.get("wpf_action"), key_sent=key_sent)
        if refusal.throttled:
            detail = (
                "Too many requests with a wrong or missing access key from this address: "
                f"try again in {refusal.retry_after} s."
            )
            return json_answer(
                {"error": "too_many_refused_requests", "detail": detail},
                status=429,
                headers={"Retry-After": str(refusal.retry_after)},
            )
        return json_answer({"error": "invalid_access_key", "detail": "Invalid Access Key"}, status=403)

    @staticmethod
    def _refuse(fields, error: WebhookInputError):
        """Answer a request with the key that is refused before processing: stored and logged (see record_invalid)."""
        deliveries.record_invalid(fields, error.status, error.code, error.detail, log=True)
        return json_answer({"error": error.code, "detail": error.detail}, status=error.status)

    # Request details -----------------------------------------------------------------------------------------

    @staticmethod
    def _delivery_fields(django_request, query) -> dict:
        headers = django_request.headers
        return {
            "query": without_secrets(query),
            "remote_ip": client_ip(django_request),
            "cio_delivery_id": clean_text(headers.get("x-cio-delivery-id") or "")[:200],
            "idempotency_key": clean_text(headers.get("x-cio-idempotency-key") or "")[:200],
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


webhook_view = never_locked(CustomerIOWebhookView.as_view())


def is_webhook_at_root(request) -> bool:
    """Whether a request for the site root is Customer.io's webhook (WP Fusion's URL format) rather than a visit."""
    return "wpf_action" in request.GET or "access_key" in request.GET or request.method not in ("GET", "HEAD")


# Access rules never cover the webhook, even a rule on "/": Customer.io must always reach it.
@never_locked(when=is_webhook_at_root)
def home(request):
    """The site root: Customer.io's webhook when the request looks like one, else the site's ordinary home page."""
    if is_webhook_at_root(request):
        return webhook_view(request)
    return HttpResponse(
        '<!doctype html><title>Welcome</title><h1>Welcome</h1><p><a href="/accounts/login/">Log in</a></p>',
        content_type="text/html; charset=utf-8",
    )
