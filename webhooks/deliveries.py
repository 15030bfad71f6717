"""Recording deliveries: one row per Customer.io delivery, written before any processing."""

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import WebhookDelivery

Status = WebhookDelivery.Status


@dataclass
class Opened:
    delivery: WebhookDelivery
    state: str  # "new" | "again" (a retry of a failed delivery) | "done" (already finished) | "busy" (in progress)


def dedup_key(idempotency_key: str, delivery_id: str) -> str | None:
    if idempotency_key:
        return f"key:{idempotency_key}"[:220]
    if delivery_id:
        return f"delivery:{delivery_id}"[:220]
    return None


def record_invalid(fields: dict, http_status: int, code: str, detail: str) -> WebhookDelivery:
    """Store a refused request (never with the key it sent: `fields` carry a cleaned query)."""
    with transaction.atomic():
        return WebhookDelivery.objects.create(
            **fields,
            status=Status.INVALID,
            http_status=http_status,
            error=f"{code}: {detail}",
            result={"error": code, "detail": detail},
            attempts=1,
        )


def open_delivery(fields: dict, key: str | None, lease: timedelta | None) -> Opened:
    """Create the delivery's row and claim it — for processing now (with a lease) or, when `lease` is None, for the
    queue — or find the row of an earlier attempt of the same Customer.io delivery and say what to do with it."""
    # An attempt is counted when processing starts: now for the synchronous path, when a worker claims it otherwise.
    if lease is None:
        claim, attempt = {"status": Status.QUEUED, "lease_expires_at": None}, 0
    else:
        claim, attempt = {"status": Status.PROCESSING, "lease_expires_at": timezone.now() + lease}, 1
    try:
        with transaction.atomic():
            return Opened(WebhookDelivery.objects.create(**fields, **claim, dedup_key=key, attempts=attempt), "new")
    except IntegrityError:
        if key is None:
            raise
    existing = WebhookDelivery.objects.get(dedup_key=key)
    if existing.status in WebhookDelivery.FINISHED_OK:
        WebhookDelivery.objects.filter(pk=existing.pk).update(attempts=F("attempts") + 1)
        return Opened(existing, "done")
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
    return Opened(existing, "again" if claimed else "busy")


def finish(
    delivery: WebhookDelivery,
    *,
    status: str,
    http_status: int,
    result: dict,
    started: float,
    now: float,
    error: str = "",
    user=None,
    traceback: str = "",
) -> None:
    delivery.status = status
    delivery.http_status = http_status
    delivery.result = result
    delivery.error = error[:2000]
    delivery.traceback = traceback
    delivery.duration_ms = max(0, int((now - started) * 1000))
    delivery.lease_expires_at = None
    if user is not None and user.pk:
        delivery.user = user
    delivery.save(
        update_fields=[
            "status",
            "http_status",
            "result",
            "error",
            "traceback",
            "duration_ms",
            "lease_expires_at",
            "user",
            "updated_at",
        ]
    )
