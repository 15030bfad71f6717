"""Who may call the webhook: whoever presents a valid access key. DRF's authentication slot, shaped like its
TokenAuthentication: `authenticate()` returns None when no valid key came (the permission then refuses, after the
refused-request throttle has counted it), and the comparison itself lives in settings_app.access_keys (constant
time, every valid key compared).

Where the key may travel (a request may carry it in more than one: any valid one is enough):
- `Authorization: Bearer KEY` or `X-Access-Key: KEY` (recommended: the key stays out of URLs and access logs);
- the password of HTTP Basic auth: Customer.io lets a webhook URL carry `https://user:KEY@host/…` and sends it as
  `Authorization: Basic …` (the user name is ignored);
- `access_key=KEY` in the query string: WP Fusion's URL format, which journeys moving over keep.

With WEBHOOK_ALLOWED_NETWORKS set, a request from an address outside those networks (the client address as the
throttle sees it: webhooks.intake.client_address, TRUSTED_PROXIES) is not authenticated whatever key it carries: it
is refused, counted and throttled exactly as a wrong key, so a stranger learns nothing from the answer.
"""

import base64
import binascii
import logging

from django.conf import settings
from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from settings_app.access_keys import KeyMatch, match_access_key
from settings_app.models import WebhookSettings
from users.models import ActivityLog
from users.services.activity import log_activity

from .client_address import client_ip
from .exceptions import InvalidAccessKey

logger = logging.getLogger(__name__)

PREVIOUS_KEY_NOTICE_SECONDS = 3600


@sensitive_variables()  # the keys in its locals must never reach an error report
def presented_keys(django_request) -> list[str]:
    """Every access key the caller sent, wherever it put it (several places at once is allowed: a URL with
    `user:password@` for a proxy's Basic auth may carry `access_key=` too); [] when none."""
    keys = []
    authorization = (django_request.META.get("HTTP_AUTHORIZATION") or "").strip()
    scheme, _, credentials = authorization.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer" and credentials:
        keys.append(credentials)
    elif scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if decoded.partition(":")[2]:
            keys.append(decoded.partition(":")[2])
    header_key = (django_request.META.get("HTTP_X_ACCESS_KEY") or "").strip()
    if header_key:
        keys.append(header_key)
    # Each value of a repeated access_key: one valid among them authenticates (the serializer then refuses the
    # repetition with a 400 the site admin sees); none valid is an ordinary refusal, counted and throttled.
    keys.extend(key for key in django_request.GET.getlist("access_key") if key)
    return keys


class AccessKeyAuthentication(BaseAuthentication):
    """Sets `request.auth` to the KeyMatch (which key matched: current, or previous until …) and `request.user` to
    None: the webhook acts for Customer.io, never for a site user."""

    @sensitive_variables()
    def authenticate(self, request):
        allowed = settings.WEBHOOK_ALLOWED_NETWORKS
        if allowed and not allowed.allows(client_ip(request._request)):
            return None  # refused before any key is looked at: the address alone decides
        site_settings = WebhookSettings.cached()
        matched = None
        # Every presented key is compared (each in constant time against every valid key), whichever matched.
        for key in presented_keys(request._request):
            found = match_access_key(key, site_settings)
            matched = matched or found
        if matched is None:
            return None
        if not matched.is_current:
            _notice_previous_key(matched)
        return (None, matched)

    def authenticate_header(self, request):
        # None: DRF answers 403, not 401 with a WWW-Authenticate challenge (WP Fusion's answer, and no browser
        # login prompt for a key that belongs in a URL or a header).
        return None


class HasAccessKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, KeyMatch):
            return True
        raise InvalidAccessKey()


def _notice_previous_key(matched: KeyMatch) -> None:
    """One activity line an hour while journeys still use a previous key, so the admin knows which to update
    before its grace period ends — not one per webhook."""
    try:
        first = cache.add(f"webhooks:previous-key-used:{matched.fingerprint}", 1, PREVIOUS_KEY_NOTICE_SECONDS)
    except Exception:  # the cache is down: the notice waits, the webhook does not fail for it
        logger.debug("previous-key notice skipped: cache unavailable", exc_info=True)
        return
    if first:
        log_activity(
            ActivityLog.Source.WEBHOOK,
            f"A webhook used the {matched.describe()} access key: update the journeys still sending it.",
            level=ActivityLog.Level.WARNING,
            context={"access_key": matched.describe(), "fingerprint": matched.fingerprint},
        )
