"""Which access keys the webhook accepts, and rotating them.

Several keys are valid at once: the current one, and each previous key until its grace period ends ("Regenerate"
keeps the old key working for WEBHOOK_KEY_GRACE_HOURS so journeys can be updated one by one). Keys are compared in
constant time against every valid key, with no early exit, so the time taken says nothing about which key (if any)
nearly matched. A delivery records a short fingerprint of the key it used — an HMAC under SECRET_KEY, so even an
8-character WP Fusion key cannot be recovered from it.
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.dateparse import parse_datetime
from django.views.decorators.debug import sensitive_variables

from .models import WebhookSettings, generate_access_key

FINGERPRINT_LENGTH = 8


@functools.lru_cache(maxsize=16)  # a few valid keys at a time; an HMAC per webhook request is worth saving
def fingerprint(key: str) -> str:
    return salted_hmac("settings_app.access_key.fingerprint", key).hexdigest()[:FINGERPRINT_LENGTH]


@dataclass(frozen=True)
class PreviousKey:
    key: str
    valid_until: datetime

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def previous_keys(site_settings: WebhookSettings, now: datetime | None = None) -> list[PreviousKey]:
    """The previous keys still in their grace period, soonest to expire first."""
    now = now or timezone.now()
    keys = []
    for entry in site_settings.previous_access_keys or []:
        valid_until = parse_datetime(str(entry.get("valid_until") or ""))
        if entry.get("key") and valid_until and valid_until > now:
            keys.append(PreviousKey(entry["key"], valid_until))
    return sorted(keys, key=lambda previous: previous.valid_until)


@dataclass(frozen=True)
class KeyMatch:
    """Which valid key a request presented — never the key itself."""

    fingerprint: str
    valid_until: datetime | None = None  # None: the current key; else a previous key in its grace period

    @property
    def is_current(self) -> bool:
        return self.valid_until is None

    def describe(self) -> str:
        """ "current", or "previous, valid until …": what the activity log and the webhook's browser page say."""
        if self.is_current:
            return "current"
        return f"previous, valid until {timezone.localtime(self.valid_until):%Y-%m-%d %H:%M %Z}"


@sensitive_variables()  # the key in its locals must never reach an error report
def match_access_key(candidate: str, site_settings: WebhookSettings, now: datetime | None = None) -> KeyMatch | None:
    """The valid key `candidate` equals, or None. Every valid key is compared, whatever matched."""
    if not isinstance(candidate, str):
        return None
    matched = None
    candidates = [(site_settings.access_key, None)]
    candidates += [(previous.key, previous.valid_until) for previous in previous_keys(site_settings, now)]
    for key, valid_until in candidates:
        # Each comparison runs in full; remembering the match instead of returning keeps the loop's length fixed.
        if constant_time_compare(candidate, key or "\x00no-key") and matched is None:
            matched = KeyMatch(fingerprint(key), valid_until)
    return matched


def default_grace() -> timedelta:
    return timedelta(hours=settings.WEBHOOK_KEY_GRACE_HOURS)


@sensitive_variables()  # the key in its locals must never reach an error report
def rotate(
    site_settings: WebhookSettings, grace: timedelta | None = None, *, new_key: str | None = None
) -> tuple[str, datetime | None]:
    """A new current key — generated, or `new_key` (one an admin typed, e.g. their WP Fusion site's); the old one
    stays valid for `grace` (the setting by default; zero ends it at once). The one way the current key changes:
    the admin's "Regenerate" button and key field, and `manage.py rotate_access_key`, all come here.
    Returns the new key and the old key's expiry (None when it was not kept). `site_settings` is updated too."""
    now = timezone.now()
    grace = default_grace() if grace is None else grace
    with transaction.atomic():
        # Read under a row lock, not from the caller's copy: two rotations at once (two admins, a button and the
        # shell) then run one after the other, and the second keeps the key the first made.
        current = _locked(site_settings)
        kept = [{"key": p.key, "valid_until": p.valid_until.isoformat()} for p in previous_keys(current, now)]
        old_until = None
        if current.access_key and grace > timedelta(0):
            old_until = now + grace
            kept.append({"key": current.access_key, "valid_until": old_until.isoformat()})
        current.access_key = new_key or generate_access_key()
        current.previous_access_keys = kept
        current.save(update_fields=["access_key", "previous_access_keys"])
    site_settings.access_key, site_settings.previous_access_keys = current.access_key, current.previous_access_keys
    return current.access_key, old_until


def end_grace(site_settings: WebhookSettings) -> int:
    """Every previous key stops working now. Returns how many were still valid."""
    with transaction.atomic():
        current = _locked(site_settings)
        ended = len(previous_keys(current))
        current.previous_access_keys = []
        current.save(update_fields=["previous_access_keys"])
    site_settings.previous_access_keys = []
    return ended


def _locked(site_settings: WebhookSettings) -> WebhookSettings:
    return WebhookSettings.objects.select_for_update().get(pk=site_settings.pk)
