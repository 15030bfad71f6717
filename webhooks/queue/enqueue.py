"""Putting deliveries in the queue: each waiting delivery names the task row that will make a worker process it."""

from django.db import transaction
from django.utils import timezone

from ..deliveries import Opened, OpenState, insert_or_reopen
from ..models import WebhookDelivery
from . import task_rows

Status = WebhookDelivery.Status


def open_queued(fields: dict, key: str | None) -> Opened:
    """Create the delivery's row together with its task's (task_rows), or find the row of an earlier attempt of the
    same Customer.io delivery and say what to do with it: a retry of one that failed is queued again, with a new
    task, in the transaction that claims it."""
    # Counted as an attempt when a worker claims it.
    claim = {"status": Status.QUEUED, "lease_expires_at": None}
    values = {**fields, **claim, "dedup_key": key, "attempts": 0}
    return insert_or_reopen(
        lambda: Opened(None, OpenState.NEW, task_rows.insert_delivery_with_task(values).pk),
        key,
        claim,
        attempt=0,
        again=enqueue,
    )


def enqueue(delivery: WebhookDelivery, run_after=None, *, also: list[int] = ()) -> None:
    """Create the task that will process the delivery, in the caller's transaction (a rollback leaves neither).
    Deliveries in `also` (the same contact's, processed together) are marked as waiting on the same task."""
    task_id = task_rows.new_task_id()
    task_rows.insert_task(task_id, delivery.pk, run_after)
    WebhookDelivery.objects.filter(pk__in=[delivery.pk, *also]).update(task_id=task_id)
    delivery.task_id = task_id


def requeue(delivery: WebhookDelivery) -> bool:
    """Put a finished or waiting delivery (back) in the queue — a replay from the admin. One being processed right
    now is left alone (returns False)."""
    with transaction.atomic():
        replayable = WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=Status.PROCESSING)
        if not replayable.update(
            status=Status.QUEUED, lease_expires_at=None, next_attempt_at=None, updated_at=timezone.now()
        ):
            return False
        enqueue(delivery)
    return True
