"""When an outbox row (a tag change, a profile change, an event) is tried again after Customer.io failed it: the
backoff both senders share."""

import random
from datetime import timedelta

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone

from settings_app.redaction import scrub


def retry_later(rows: QuerySet, error: str) -> None:
    """Let these claimed rows go, to be tried again after a backoff that doubles with each attempt (capped by
    WEBHOOK_RETRY_MAX_SECONDS), with jitter so that workers that failed together do not retry together."""
    attempts = 1 + max(rows.values_list("attempts", flat=True), default=0)
    delay = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    delay *= random.uniform(0.8, 1.2)
    rows.update(
        attempts=F("attempts") + 1,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        claimed_until=None,
        last_error=scrub(error)[:500],  # shown in the admin: never a secret a message quoted
    )
