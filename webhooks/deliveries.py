"""Recording deliveries: one row per Customer.io delivery, written before any processing, and what its
processing came to — the same writer for the synchronous webhook and the background worker."""

import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from users.models import ActivityLog
from users.services.activity import log_activity
from users.services.backfills.common import IN_LIST_LIMIT

from . import row_inserts
from .metrics import counters as metrics
from .models import WebhookDelivery

Status = WebhookDelivery.Status


class OpenState(enum.StrEnum):
    NEW = "new"
    AGAIN = "again"  # a retry of a delivery that failed (or whose processing died): processed again
    DONE = "done"  # finished already: answered with the first result
    BUSY = "busy"  # being processed (or waiting in the queue) right now


@dataclass
class Opened:
    # None for a delivery just queued: nothing reads it again here (the worker loads it); its id is delivery_id.
    delivery: WebhookDelivery | None
    state: OpenState
    delivery_id: int | None = None

    def __post_init__(self):
        if self.delivery is not None:
            self.delivery_id = self.delivery.pk


def dedup_key(idempotency_key: str, delivery_id: str) -> str | None:
    if idempotency_key:
        return f"key:{idempotency_key}"[:220]
    if delivery_id:
        return f"delivery:{delivery_id}"[:220]
    return None


def record_invalid(fields: dict, http_status: int, code: str, detail: str, *, log: bool) -> WebhookDelivery:
    """Store a refused request (never with the key it sent: `fields` carry a cleaned query). `log`: write it to the
    activity log too — for callers that had the key (a journey sending a bad request is the admin's to fix);
    never per request for a wrong or missing key, which anyone can send."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            **fields,
            status=Status.INVALID,
            http_status=http_status,
            error=f"{code}: {detail}",
            result={"error": code, "detail": detail},
            attempts=1,
        )
    if log:
        log_activity(
            ActivityLog.Source.WEBHOOK,
            f"Webhook {delivery.action or '(no action)'} refused: {http_status} {code}: {detail}",
            level=ActivityLog.Level.WARNING,
            context={"action": delivery.action, "http_status": http_status, "error": code},
            delivery_id=delivery.pk,
        )
    return delivery


def open_delivery(fields: dict, key: str | None, lease: timedelta) -> Opened:
    """Create the delivery's row, claimed for processing now (with a lease), or find the row of an earlier attempt of
    the same Customer.io delivery and say what to do with it. (The queue opens its deliveries with their tasks:
    webhooks.queue.enqueue.)"""
    # An attempt is counted when processing starts: now for the synchronous path, when a worker claims it otherwise.
    claim = {"status": Status.PROCESSING, "lease_expires_at": timezone.now() + lease}
    values = {**fields, **claim, "dedup_key": key, "attempts": 1}

    def insert() -> Opened:
        now = timezone.now()
        pk = row_inserts.insert(WebhookDelivery, values, now=now)
        delivery = WebhookDelivery(pk=pk, received_at=now, updated_at=now, **values)
        delivery._state.adding = False  # it is in the database: a later save() updates it
        return Opened(delivery, OpenState.NEW)

    return insert_or_reopen(insert, key, claim, attempt=1)


def record_answered(fields: dict, key: str | None, outcome, *, duration_ms: int) -> Opened:
    """Record an action that touches nobody (`test`), already answered: one INSERT holds the request and its
    outcome, one commit. A retry of a delivery already done is DONE (answer with the first result); one of a
    failed or refused attempt gets this outcome."""
    values = {**fields, **_outcome_fields(outcome, duration_ms), "dedup_key": key, "attempts": 1}
    if "user" in values:
        values["user_id"] = values.pop("user").pk
    opened = insert_or_reopen(
        lambda: Opened(None, OpenState.NEW, row_inserts.insert(WebhookDelivery, values)),
        key,
        {"status": Status.PROCESSING, "lease_expires_at": None},
        attempt=1,
        again=lambda delivery: record_outcome([delivery], outcome, duration_ms=duration_ms),
    )
    if opened.state == OpenState.NEW:  # a retry taken AGAIN was counted by record_outcome
        metrics.deliveries_processed([fields.get("action", "")], outcome.status)
    return opened


def insert_or_reopen(
    insert: Callable[[], Opened],
    key: str | None,
    claim: dict,
    *,
    attempt: int,
    again: Callable[[WebhookDelivery], object] | None = None,
) -> Opened:
    """Write a new delivery's row with `insert` (one statement, or a transaction of its own); when an earlier attempt
    of the same Customer.io delivery holds the dedup key `key`, find that row instead and say what to do with it:
    one that failed, or whose processing died, is claimed again with the fields `claim`, counting `attempt` more
    attempts, and `again(delivery)` runs in the transaction that claims it."""
    try:
        with _savepoint_if_in_transaction():
            return insert()
    except IntegrityError:
        if key is None:
            raise
    with transaction.atomic():
        opened = _reopen(key, claim, attempt)
        if opened.state == OpenState.AGAIN and again is not None:
            again(opened.delivery)
    return opened


def _savepoint_if_in_transaction():
    """Around a write that commits on its own (one statement): outside any transaction nothing is opened (no
    BEGIN/COMMIT round trips); inside the caller's, a savepoint keeps a duplicate-key failure from dooming it."""
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


def _reopen(key: str, claim: dict, attempt: int) -> Opened:
    existing = WebhookDelivery.objects.get(dedup_key=key)
    if existing.status in WebhookDelivery.FINISHED_OK:
        WebhookDelivery.objects.filter(pk=existing.pk).update(attempts=F("attempts") + 1)
        return Opened(existing, OpenState.DONE)
    # Claim it only if it failed before, or its processing died (lease run out): a retry that arrives while the
    # first attempt still runs (Customer.io gave up waiting after 4 s), or while it waits in the queue, must not
    # run it twice.
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(pk=existing.pk)
        .filter(
            Q(status__in=[Status.FAILED, Status.INVALID, Status.RECEIVED])
            | Q(status=Status.PROCESSING, lease_expires_at__lt=now)
            | Q(status=Status.PROCESSING, lease_expires_at__isnull=True)
        )
        .update(**claim, attempts=F("attempts") + attempt, error="", updated_at=now)
    )
    existing.refresh_from_db()
    return Opened(existing, OpenState.AGAIN if claimed else OpenState.BUSY)


def record_outcome(
    deliveries: list[WebhookDelivery],
    outcome,
    *,
    duration_ms: int,
    retry_at=None,
    gave_up: bool = False,
    leading: WebhookDelivery | None = None,
) -> int:
    """Write what one processing came to on its deliveries (one for the synchronous webhook; a contact's waiting
    ones processed together for the queue) — only on those it still holds: with its lease lost, another processing
    has them now. With `retry_at` the outcome is not final: they wait in the queue until then. A final failure is
    written to the activity log, once: never each attempt of a retried one (an outage during a broadcast would
    write a line per attempt). `outcome` is a processing.Outcome; `leading`: the delivery whose action ran (the
    first one by default). Returns how many deliveries were written."""
    now = timezone.now()
    held = WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries], status=Status.PROCESSING)
    error = outcome.error
    if gave_up:
        error = f"{error} (gave up after {settings.WEBHOOK_RETRY_FOR} s of retries)"
    written = {**_outcome_fields(outcome, duration_ms, error), "updated_at": now}
    if retry_at is not None:
        written.update(status=Status.RETRYING, next_attempt_at=retry_at)
    count = held.update(**written)
    _note_progress()
    _count_processed(deliveries, count, written)
    for delivery in deliveries:
        for name, value in written.items():
            setattr(delivery, name, value)
    if count and retry_at is None and outcome.status == Status.FAILED:
        log_failure(leading or deliveries[0], deliveries, outcome, error)
    return count


def record_successes(successes: list[tuple[list[WebhookDelivery], dict, int]], *, duration_ms: int) -> None:
    """Write many processings' successes at once (a scanned batch's update_tags written in bulk): each is (its
    deliveries, its result, its user's id). The caller holds the deliveries: locked, still processing, in its
    transaction."""
    now = timezone.now()
    rows = []
    for batch, result, user_id in successes:
        for delivery in batch:
            delivery.result, delivery.user_id = result, user_id
            rows.append(delivery)
    for start in range(0, len(rows), BULK_CHUNK):
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in rows[start : start + BULK_CHUNK]]).update(
            status=Status.SUCCEEDED,
            http_status=200,
            error="",
            traceback="",
            lease_expires_at=None,
            next_attempt_at=None,
            duration_ms=max(0, duration_ms),
            updated_at=now,
        )
    WebhookDelivery.objects.bulk_update(rows, ["result", "user"], batch_size=BULK_CHUNK)
    for delivery in rows:
        delivery.status = Status.SUCCEEDED
    _note_progress()
    metrics.deliveries_processed([delivery.action for delivery in rows], Status.SUCCEEDED)


BULK_CHUNK = IN_LIST_LIMIT
_last_recorded = 0.0


def _note_progress() -> None:
    global _last_recorded
    _last_recorded = time.monotonic()


def last_recorded_at() -> float:
    """time.monotonic() of the last outcome this process wrote: the worker's sign of progress inside a long task
    (one task may process a batch of thousands of deliveries)."""
    return _last_recorded


def _count_processed(deliveries: list[WebhookDelivery], count: int, written: dict) -> None:
    """Count the deliveries record_outcome wrote (webhook_deliveries_processed_total). Usually all it was given; when
    some had lost their lease to another processing, the ones written are read back (stamped with this write's
    updated_at), so that each outcome is counted once, by the processing that wrote it."""
    if not count:
        return
    actions = [delivery.action for delivery in deliveries]
    if count < len(deliveries):
        actions = WebhookDelivery.objects.filter(
            pk__in=[delivery.pk for delivery in deliveries], updated_at=written["updated_at"], status=written["status"]
        ).values_list("action", flat=True)
    metrics.deliveries_processed(actions, written["status"])


def _outcome_fields(outcome, duration_ms: int, error: str | None = None) -> dict:
    """A delivery's fields that say what its (final) processing came to."""
    fields = {
        "status": outcome.status,
        "http_status": outcome.http_status,
        "result": outcome.result,
        "error": (outcome.error if error is None else error)[:2000],
        "traceback": outcome.traceback,
        "lease_expires_at": None,
        "next_attempt_at": None,
        "duration_ms": max(0, duration_ms),
    }
    if outcome.user is not None and outcome.user.pk:
        fields["user"] = outcome.user
    return fields


def log_failure(leading: WebhookDelivery, deliveries: list[WebhookDelivery], outcome, error: str) -> None:
    """One activity line for a delivery that failed for good (with the others processed with it)."""
    server_side = outcome.http_status >= 500
    log_activity(
        ActivityLog.Source.WEBHOOK,
        f"Webhook {leading.action} for {leading.contact} failed: {outcome.http_status} {error}",
        level=ActivityLog.Level.ERROR if server_side else ActivityLog.Level.WARNING,
        user=outcome.user if outcome.user is not None and outcome.user.pk else None,
        context={
            "action": leading.action,
            "contact": leading.contact,
            "http_status": outcome.http_status,
            "error": (outcome.result or {}).get("error", ""),
            "attempts": leading.attempts,
            "deliveries": sorted(d.pk for d in deliveries),
        },
        delivery_id=leading.pk,
    )


# Copies of a delivery ------------------------------------------------------------------------------------------------

# A person's deliveries received within a few seconds are a handful, or a burst of a few hundred at most: those past
# this many are left out (the newest are kept).
COPIES_LOOKED_AT = 500


def copies_of(delivery: WebhookDelivery, since: datetime) -> list[tuple[datetime, datetime | None]]:
    """The other deliveries of the same request for the same person — same action, query and body, each its own
    Customer.io delivery (a retry is the same row) — received from `since` until `delivery`: (when each was
    received, when it was answered or None while it is being processed). Queued ones are not copies of a
    synchronous delivery: the queue coalesces them itself."""
    rows = (
        WebhookDelivery.objects.filter(
            contact_key=delivery.contact_key,
            action=delivery.action,
            received_at__gte=since,
            received_at__lte=delivery.received_at,
            status__in=[Status.PROCESSING, *WebhookDelivery.FINISHED_OK, Status.FAILED],
        )
        .exclude(pk=delivery.pk)
        .order_by("-received_at")
        .values_list("received_at", "updated_at", "status", "query", "body")[:COPIES_LOOKED_AT]
    )
    return [
        (received_at, None if status == Status.PROCESSING else updated_at)
        for received_at, updated_at, status, query, body in rows
        if query == delivery.query and body == delivery.body
    ]
