"""DRF's throttle slot for the webhook: a thin adapter over webhooks.intake.refusals, which counts requests refused
for their key in Django's cache (Redis when REDIS_URL is set) and says when an address is over its limit.

Not a SimpleRateThrottle: that one counts every request, the right key included, through a read-modify-write of a
timestamp list; here only refusals count, with atomic counters, and a request with a valid key is never throttled.
"""

from rest_framework.throttling import BaseThrottle

from settings_app.access_keys import KeyMatch

from . import refusals
from .authentication import presented_keys
from .client_address import client_ip

# Set on Django's request once its refusal is counted, so the view's other refusals (a 405, a malformed query)
# count the requests the throttle never saw, and none twice.
REFUSAL_COUNTED = "_webhook_refusal_counted"


class RefusedRequestThrottle(BaseThrottle):
    """The journey webhook's: a request without a valid access key is counted (a wrong key or none) and past the
    limit answered 429. Subclasses say what authenticates another endpoint's requests (the reporting webhook's
    signature) and how its refusals are named in the count."""

    def __init__(self):
        self.refusal: refusals.Refusal | None = None

    def allow_request(self, request, view) -> bool:
        if self.authenticated(request):
            return True
        django_request = request._request
        setattr(django_request, REFUSAL_COUNTED, True)
        # The project's one rule for the client's address (TRUSTED_PROXIES), not DRF's NUM_PROXIES.
        self.refusal = refusals.refuse(
            client_ip(django_request),
            self.asked_for(django_request),
            key_sent=self.credentials_sent(django_request),
        )
        return not self.refusal.throttled

    def wait(self) -> int | None:
        return self.refusal.retry_after if self.refusal is not None else None

    def authenticated(self, request) -> bool:
        return isinstance(request.auth, KeyMatch)

    def asked_for(self, django_request) -> str | None:
        """What the refused request asked for, as the refused-requests table lists it."""
        return django_request.GET.get("wpf_action")

    def credentials_sent(self, django_request) -> bool:
        """Whether it was refused for wrong credentials (rather than none)."""
        return bool(presented_keys(django_request))
