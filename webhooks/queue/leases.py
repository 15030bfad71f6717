"""A worker's hold on the deliveries it claimed: a lease that runs out unless renewed, so that the sweep (recovery)
can tell a worker that died from one still working."""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from users.services.backfills.common import IN_LIST_LIMIT, batched

from ..models import WebhookDelivery

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


def lease_length() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)


class LeaseKeeper:
    """Renews the claimed deliveries' lease while they are processed, from a thread of its own."""

    def __init__(self, delivery_ids: list[int]):
        self.delivery_ids = delivery_ids
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="delivery-lease", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join(timeout=30)

    def _renew(self):
        interval = max(1.0, settings.WEBHOOK_LEASE_SECONDS / 3)
        try:
            while not self.stopped.wait(interval):
                try:
                    for chunk in batched(self.delivery_ids, IN_LIST_LIMIT):
                        WebhookDelivery.objects.filter(pk__in=chunk, status=Status.PROCESSING).update(
                            lease_expires_at=timezone.now() + lease_length()
                        )
                except Exception:
                    # One failed renewal is not fatal (a lease lasts three intervals): try again next time.
                    logger.exception("Renewing delivery leases failed")
                    connection.close()
        finally:
            connection.close()
