"""Who may call the reporting webhook: whoever signs the request as Customer.io does. DRF's authentication,
permission and throttle slots for the reporting endpoint, as AccessKeyAuthentication, HasAccessKey and
RefusedRequestThrottle are for the journey webhook.

Customer.io signs each reporting webhook request with the webhook's signing key: `X-CIO-Timestamp` holds the Unix
time of sending and `X-CIO-Signature` the hex HMAC-SHA256, under the key, of `v0:<timestamp>:<raw body>`. The raw
body is checked before anything parses it; the signature is compared in constant time with the one each configured
key gives (CUSTOMERIO_REPORTING_SIGNING_KEYS: several during a rotation, or for several workspaces), every key
compared whichever matched; a timestamp more than MAX_AGE_SECONDS away from the site's clock is refused, so a
request recorded on the way cannot be played again later. A request that fails is refused (401), counted and
throttled as the journey webhook's wrong keys are (webhooks.intake.refusals), and nothing of it is stored.
"""

import enum
import hashlib
import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from .exceptions import InvalidSignature
from .throttling import RefusedRequestThrottle

# Customer.io's signatures are checked against the site's clock: five minutes either way covers clocks out of step and
# a retry's queueing, and bounds how long a recorded request could be replayed (its event is stored once anyway).
MAX_AGE_SECONDS = 300
TIMESTAMP_HEADER = "HTTP_X_CIO_TIMESTAMP"
SIGNATURE_HEADER = "HTTP_X_CIO_SIGNATURE"
# The refused-requests table lists what a refused request asked for: for the reporting webhook, this.
REPORTING = "reporting"
# Where the authentication leaves its reason for the permission's answer (DRF's permission runs after the throttle).
REFUSAL_ATTRIBUTE = "_reporting_signature_refusal"


class Refusal(enum.StrEnum):
    UNSIGNED = "unsigned"
    MISMATCH = "mismatch"
    EXPIRED = "expired"


DETAILS = {
    Refusal.UNSIGNED: "The request is not signed: X-CIO-Timestamp and X-CIO-Signature are required.",
    Refusal.MISMATCH: "The signature matches no signing key (CUSTOMERIO_REPORTING_SIGNING_KEYS).",
    Refusal.EXPIRED: (
        f"The signature's timestamp is more than {MAX_AGE_SECONDS // 60} minutes away from the site's clock: "
        "a replay, or a clock out of step."
    ),
}


@dataclass(frozen=True)
class ValidSignature:
    """request.auth of a signed request: which configured key signed it (its position, 1 for the first; never the
    key)."""

    key_number: int


def signature_sent(django_request) -> bool:
    """Whether the request carried a signature at all: a refusal counts as a wrong key then, as a missing one
    otherwise."""
    return bool(django_request.META.get(SIGNATURE_HEADER, "").strip())


@sensitive_variables()
def check(body: bytes, timestamp: str, signature: str, keys: list[str], now: float) -> ValidSignature | Refusal:
    """Whether `signature` is Customer.io's for `body` sent at `timestamp` under one of `keys`, at time `now`."""
    timestamp, signature = timestamp.strip(), signature.strip().lower()
    if not signature or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return Refusal.UNSIGNED
    signed = b"v0:" + timestamp.encode() + b":" + body
    matched = None
    for number, key in enumerate(keys, start=1):
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
        # Every key is compared, whichever matched: the time taken says nothing about which one did.
        if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")) and matched is None:
            matched = number
    if matched is None:
        return Refusal.MISMATCH
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return Refusal.EXPIRED
    return ValidSignature(matched)


class SignatureAuthentication(BaseAuthentication):
    """Sets request.auth to ValidSignature for a request Customer.io signed, request.user to None (the webhook acts
    for Customer.io, never for a site user); None otherwise, with the reason left for HasValidSignature."""

    def authenticate(self, request):
        django_request = request._request
        verdict = check(
            django_request.body,  # its declared size was checked first (the view): at most WEBHOOK_MAX_BODY_BYTES
            django_request.META.get(TIMESTAMP_HEADER, ""),
            django_request.META.get(SIGNATURE_HEADER, ""),
            settings.CUSTOMERIO_REPORTING_SIGNING_KEYS,
            time.time(),
        )
        if isinstance(verdict, ValidSignature):
            return (None, verdict)
        setattr(django_request, REFUSAL_ATTRIBUTE, verdict)
        return None

    def authenticate_header(self, request):
        return "X-CIO-Signature"


class HasValidSignature(BasePermission):
    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, ValidSignature):
            return True
        refusal = getattr(request._request, REFUSAL_ATTRIBUTE, Refusal.UNSIGNED)
        raise InvalidSignature(DETAILS[refusal])


class RefusedSignatureThrottle(RefusedRequestThrottle):
    """The journey webhook's refused-request throttle and count, for unsigned requests: the same counters per address
    (one limit for both endpoints), listed as asking for `reporting`; a wrong signature counts as a wrong key, none as
    a missing one."""

    def authenticated(self, request) -> bool:
        return isinstance(request.auth, ValidSignature)

    def asked_for(self, django_request) -> str:
        return REPORTING

    def credentials_sent(self, django_request) -> bool:
        return signature_sent(django_request)
