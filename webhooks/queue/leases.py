"""A worker's hold on the deliveries it claimed: a lease that runs out unless renewed, so that the sweep (recovery)
can tell a worker that died from one still working — and, for a processing that ends in an exception (the database
went away under it), the release of what it still holds, at once rather than when the lease runs out."""

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from users.services.backfills.common import IN_LIST_LIMIT, batched

from ..deliveries import record_outcome
from ..models import WebhookDelivery
from ..outages import database_unavailable, outage
from .enqueue import enqueue

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


def lease_length() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)


@dataclass
class Hold:
    """Deliveries a processing claimed, and every lease end it wrote on them: while one of those is still on a
    delivery, no other processing has taken it."""

    delivery_ids: list[int]
    leases: set[datetime]
    # Outcomes reached but not written — the database went away between the action's commit and its outcome's —
    # as (delivery ids, processing.Outcome, duration in ms): written on release rather than run a second time.
    outcomes: list[tuple[list[int], object, int]] = field(default_factory=list)


_current = threading.local()  # the hold of the processing this thread is running (LeaseKeeper)


def keep_outcome(delivery_ids: list[int], outcome, duration_ms: int, hold: Hold | None = None) -> None:
    """Keep a processing's outcome that could not be written, for the release (only a success or a skip: their
    effects are committed; a failure's were rolled back, and the delivery is simply processed again)."""
    hold = hold or getattr(_current, "hold", None)
    if hold is not None and outcome.status in WebhookDelivery.FINISHED_OK:
        hold.outcomes.append((list(delivery_ids), outcome, duration_ms))


class LeaseKeeper:
    """Renews the claimed deliveries' lease while they are processed, from a thread of its own; when the processing
    ends in an exception, releases the deliveries it still holds (release_abandoned)."""

    def __init__(self, delivery_ids: list[int], lease_expires_at: datetime):
        self.hold = Hold(list(delivery_ids), {lease_expires_at})
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="delivery-lease", daemon=True)

    @property
    def delivery_ids(self) -> list[int]:
        return self.hold.delivery_ids

    def __enter__(self):
        self.thread.start()
        _current.hold = self.hold
        return self

    def __exit__(self, exc_type, exc, traceback):
        _current.hold = None
        self.stopped.set()
        self.thread.join(timeout=30)
        if exc_type is not None and issubclass(exc_type, Exception):
            if database_unavailable(exc):
                outage.met(exc)
            abandon(self.hold)
            try_releasing_abandoned()

    def _renew(self):
        interval = max(1.0, settings.WEBHOOK_LEASE_SECONDS / 3)
        try:
            while not self.stopped.wait(interval):
                expires_at = timezone.now() + lease_length()
                # Noted before the UPDATE: if the database goes away during it, the release still knows this value.
                self.hold.leases.add(expires_at)
                try:
                    for chunk in batched(self.hold.delivery_ids, IN_LIST_LIMIT):
                        WebhookDelivery.objects.filter(pk__in=chunk, status=Status.PROCESSING).update(
                            lease_expires_at=expires_at
                        )
                except Exception as error:
                    # One failed renewal is not fatal (a lease lasts three intervals): try again next time.
                    if database_unavailable(error):
                        outage.met(error)
                    else:
                        logger.exception("Renewing delivery leases failed")
                    connection.close()
        finally:
            connection.close()


# Holds of processings that ended in an exception, until their deliveries are released. Per process.
_abandoned: list[Hold] = []
_abandoned_lock = threading.Lock()


def abandon(hold: Hold) -> None:
    """Note deliveries a processing gave up on (it failed, or the database went away under it), to be released."""
    with _abandoned_lock:
        _abandoned.append(hold)


def has_abandoned() -> bool:
    return bool(_abandoned)


def release_abandoned() -> int:
    """Put back in the queue the deliveries of abandoned processings that still hold them — no other processing can
    have taken them while a lease they wrote is on them — each ready at once, with a task. Returns how many.
    Raises the database's error when it is still unavailable (the holds stay, for the next call)."""
    with _abandoned_lock:  # taken out, so that two threads (the loop, the sweep) never release one hold twice
        holds, _abandoned[:] = list(_abandoned), []
    released = 0
    while holds:
        try:
            released += _release(holds[0])
        except Exception:
            with _abandoned_lock:
                _abandoned.extend(holds)
            raise
        holds.pop(0)
    if released:
        logger.warning("Released %d webhook deliveries whose processing was cut off; they are queued again", released)
    return released


def try_releasing_abandoned() -> int:
    """release_abandoned(), from where a failure must not raise (a processing's end, the sweep)."""
    if not _abandoned:
        return 0
    if not connection.in_atomic_block:
        close_old_connections()  # the connection that just failed is not reused
    try:
        return release_abandoned()
    except Exception as error:
        if database_unavailable(error):
            outage.met(error)
        else:
            logger.exception("Releasing the deliveries of a cut-off processing failed; trying again later")
        return 0


def _release(hold: Hold) -> int:
    for delivery_ids, outcome, duration_ms in hold.outcomes:
        with transaction.atomic():
            held = list(
                WebhookDelivery.objects.select_for_update().filter(
                    pk__in=delivery_ids, status=Status.PROCESSING, lease_expires_at__in=hold.leases
                )
            )
            if held:
                record_outcome(held, outcome, duration_ms=duration_ms)
                logger.warning("Wrote the outcome of %d webhook deliveries cut off after their processing", len(held))
    now = timezone.now()
    released = 0
    for chunk in batched(hold.delivery_ids, IN_LIST_LIMIT):
        with transaction.atomic():
            held = list(
                WebhookDelivery.objects.select_for_update()
                .filter(pk__in=chunk, status=Status.PROCESSING, lease_expires_at__in=hold.leases)
                .only("pk", "contact_key", "task_id")
                .order_by("pk")
            )
            if not held:
                continue
            WebhookDelivery.objects.filter(pk__in=[d.pk for d in held]).update(
                status=Status.RETRYING, lease_expires_at=None, next_attempt_at=now, updated_at=now
            )
            by_contact: dict[str, list[WebhookDelivery]] = {}
            for delivery in held:
                by_contact.setdefault(delivery.contact_key, []).append(delivery)
            for deliveries in by_contact.values():
                enqueue(deliveries[0], also=[d.pk for d in deliveries[1:]])
            released += len(held)
    return released
