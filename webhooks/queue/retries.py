"""What a queued processing came to, written on its deliveries: a failure that may pass (Customer.io trouble) is
tried again later, with backoff, until WEBHOOK_RETRY_FOR after the contact's first delivery was received."""

import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..deliveries import record_outcome
from ..processing import Outcome
from .claiming import ContactWork
from .enqueue import enqueue


def record_or_retry(work: ContactWork, outcome: Outcome, started: float) -> None:
    """Write the outcome on the contact's deliveries; a retryable one, still in time, waits in the queue for its
    retry's task."""
    now = timezone.now()
    duration_ms = int((time.monotonic() - started) * 1000)
    first_received = min(d.received_at for d in work.deliveries)
    give_up = (now - first_received).total_seconds() >= settings.WEBHOOK_RETRY_FOR
    if outcome.retryable and not give_up:
        attempts = max(d.attempts for d in work.deliveries)
        next_attempt = now + timedelta(seconds=retry_delay(attempts))
        with transaction.atomic():
            if record_outcome(work.deliveries, outcome, duration_ms=duration_ms, retry_at=next_attempt):
                enqueue(work.leading, run_after=next_attempt, also=[d.pk for d in work.deliveries])
        return
    record_outcome(work.deliveries, outcome, duration_ms=duration_ms, gave_up=outcome.retryable, leading=work.leading)


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter, capped."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)
