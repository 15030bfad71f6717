"""The queue's figures as gauges, read from the database when Prometheus scrapes: they live there, so every web
process answers the same, whichever one the scrape reaches, and no process has to keep them up to date. Six
aggregates, each on an index (the owed password returns on a partial one), the ones /healthz, `webhook_queue` and
the admin overview read."""

import logging

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from users.services import outbox, segment_changes
from users.services.accounts import password_returns_owed

from ..health import newest_heartbeat, queue_backlog

logger = logging.getLogger(__name__)


class QueueCollector:
    def describe(self):
        return []  # registering it reads nothing; each scrape does

    def collect(self):
        try:
            backlog = queue_backlog()
            heartbeat = newest_heartbeat()
            changes = segment_changes.waiting_changes().count
            outbox_waiting = outbox.waiting_entries().count
            passwords = password_returns_owed()
        except DatabaseError as error:
            # The counters still go out; the gauges are missing from this scrape (the class name only: a driver's
            # message may name hosts and users).
            logger.warning("Metrics: the queue's figures could not be read (%s)", type(error).__name__)
            return
        now = timezone.now()
        yield _gauge(
            "webhook_deliveries_waiting",
            "Deliveries owed a result: queued, waiting for a retry, or being processed.",
            backlog.waiting,
        )
        yield _gauge(
            "webhook_oldest_waiting_seconds",
            "Age of the oldest delivery owed a result (0 when none).",
            backlog.oldest_age(now) or 0.0,
        )
        yield _gauge("segment_changes_waiting", "Tag changes made on the site not yet sent to Customer.io.", changes)
        yield _gauge(
            "outbox_entries_waiting",
            "Profile changes, events and login links made on the site not yet sent to Customer.io.",
            outbox_waiting,
        )
        yield _gauge(
            "password_returns_owed", "Users whose generated password Customer.io has not accepted yet.", passwords
        )
        yield _gauge(
            "worker_last_heartbeat_timestamp_seconds",
            "When a webhook_worker last showed progress (Unix time; 0 when none ever did).",
            heartbeat.timestamp() if heartbeat else 0.0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
