"""Who may call the webhook: whoever presents a valid access key. DRF's authentication slot, shaped like its
TokenAuthentication: `authenticate()` returns None when no valid key came (the permission then refuses, after the
refused-request throttle has counted it), and the comparison itself lives in settings_app.access_keys (constant
time, every valid key compared).

Where the key may travel, in the order looked at:
- `Authorization: Bearer KEY` or `X-Access-Key: KEY` (recommended: the key stays out of URLs and access logs);
- the password of HTTP Basic auth: Customer.io lets a webhook URL carry `https://user:KEY@host/…` and sends it as
  `Authorization: Basic …` (the user name is ignored);
- `access_key=KEY` in the query string: WP Fusion's URL format, which journeys moving over keep.
"""

import base64
import binascii
import logging

from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from settings_app.access_keys import KeyMatch, match_access_key
from settings_app.models import WebhookSettings
from users.models import ActivityLog
from users.services.activity import log_activity

from .exceptions import DuplicateParameter, InvalidAccessKey

logger = logging.getLogger(__name__)

PREVIOUS_KEY_NOTICE_SECONDS = 3600


@sensitive_variables()  # the key in its locals must never reach an error report
def presented_key(django_request) -> str:
    """The access key the caller sent, wherever it put it; "" when none."""
    authorization = (django_request.META.get("HTTP_AUTHORIZATION") or "").strip()
    scheme, _, credentials = authorization.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer" and credentials:
        return credentials
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        password = decoded.partition(":")[2]
        if password:
            return password
    header_key = (django_request.META.get("HTTP_X_ACCESS_KEY") or "").strip()
    if header_key:
        return header_key
    keys = django_request.GET.getlist("access_key")
    if len(keys) > 1:
        # Which one was meant is anybody's guess; the last one winning would hide a pasted URL's mistake.
        raise DuplicateParameter("access_key")
    return keys[0] if keys else ""


class AccessKeyAuthentication(BaseAuthentication):
    """Sets `request.auth` to the KeyMatch (which key matched: current, or previous until …) and `request.user` to
    None: the webhook acts for Customer.io, never for a site user."""

    @sensitive_variables()
    def authenticate(self, request):
        matched = match_access_key(presented_key(request._request), WebhookSettings.cached())
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
