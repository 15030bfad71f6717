"""Waiting for a burst to settle before a big batch is claimed.

A burst that is still arriving is let settle (WEBHOOK_PLAN_SETTLE_SECONDS without a new delivery) before a big batch
is claimed, so that one scan serves it (planning), but never longer than WEBHOOK_PLAN_MAX_WAIT_SECONDS after the
oldest waiting delivery was received.
"""

import time

from django.conf import settings
from django.db.models import Count, Max, Min
from django.utils import timezone

from users.models import Tag

from ..actions import user_actions
from ..models import WebhookDelivery
from .claiming import due


def wait_for_burst(delivery_id: int) -> None:
    """Before claiming a batch big enough for scans, let a burst that is still arriving settle, so that one scan
    serves it rather than one per moment of it. Bounded: the oldest waiting delivery never waits more than
    WEBHOOK_PLAN_MAX_WAIT_SECONDS for it."""
    threshold = None
    while True:
        now = timezone.now()
        waiting = WebhookDelivery.objects.filter(status__in=WebhookDelivery.WAITING, action__in=user_actions())
        waiting = waiting.filter(due(now))
        seen = waiting.aggregate(n=Count("pk"), first=Min("received_at"), last=Max("received_at"))
        if threshold is None:
            threshold = 1 + Tag.objects.count()  # fewer contacts than this are read one by one anyway
        if seen["n"] <= threshold or not waiting.filter(pk=delivery_id).exists():
            return
        quiet = (now - seen["last"]).total_seconds() >= settings.WEBHOOK_PLAN_SETTLE_SECONDS
        overdue = (now - seen["first"]).total_seconds() >= settings.WEBHOOK_PLAN_MAX_WAIT_SECONDS
        if quiet or overdue:
            return
        time.sleep(min(0.25, settings.WEBHOOK_PLAN_SETTLE_SECONDS))
