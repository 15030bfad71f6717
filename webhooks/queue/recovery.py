"""Recovery: deliveries whose worker died (their lease ran out) or whose task went missing are queued again, and a
delivery that keeps killing its worker ends failed instead of looping. Every worker runs the sweep now and then;
it is safe to run from all of them at once."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from ..deliveries import log_failure
from ..models import WebhookDelivery
from ..processing import failure
from . import WorkerDied
from .claiming import due
from .enqueue import enqueue
from .leases import lease_length

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


def sweep() -> int:
    """Re-queue deliveries whose worker died (lease expired) and waiting deliveries without a live task. Returns
    how many were re-queued. Safe to run from every worker at once: a delivery is claimed by exactly one."""
    now = timezone.now()
    requeued = 0
    for delivery in WebhookDelivery.objects.filter(status=Status.PROCESSING, lease_expires_at__lt=now):
        # The conditional update makes concurrent sweeps re-queue it once.
        expired = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PROCESSING, lease_expires_at__lt=now)
        with transaction.atomic():
            if _past_retrying(delivery, now):
                # A delivery that keeps killing its worker must end visibly failed, not loop forever.
                error = f"worker_died: its processing died {delivery.attempts} times; gave up"
                if expired.update(
                    status=Status.FAILED, lease_expires_at=None, http_status=500, error=error, updated_at=now
                ):
                    _abandon_task(delivery.task_id)
                    died = failure(500, "worker_died", f"its processing died {delivery.attempts} times; gave up")
                    log_failure(delivery, [delivery], died, error)
                continue
            if expired.update(status=Status.RETRYING, lease_expires_at=None, next_attempt_at=now, updated_at=now):
                _abandon_task(delivery.task_id)
                enqueue(delivery)
                requeued += 1
    stale_start = now - lease_length()
    waiting = WebhookDelivery.objects.filter(status__in=WebhookDelivery.WAITING).filter(due(now))
    for delivery in waiting.only("pk", "task_id", "updated_at").iterator():
        task = DBTaskResult.objects.filter(pk=delivery.task_id).first() if delivery.task_id else None
        alive = task is not None and (
            task.status == TaskResultStatus.READY
            or (task.status == TaskResultStatus.RUNNING and task.started_at and task.started_at > stale_start)
        )
        if alive or delivery.updated_at > now - timedelta(seconds=5):
            continue  # its task will come; (a delivery changed a moment ago may be mid-enqueue)
        with transaction.atomic():
            if WebhookDelivery.objects.filter(
                pk=delivery.pk, status__in=WebhookDelivery.WAITING, task_id=delivery.task_id
            ).update(updated_at=now):
                if task is not None and task.status == TaskResultStatus.RUNNING:
                    _abandon_task(delivery.task_id)
                enqueue(delivery)
                requeued += 1
    if requeued:
        logger.warning("Recovered %d webhook deliveries (dead worker or missing task)", requeued)
    return requeued


# Processings of one delivery that may die (worker killed) before the sweep gives up on it.
MAX_DEAD_ATTEMPTS = 10


def _past_retrying(delivery: WebhookDelivery, now) -> bool:
    too_old = (now - delivery.received_at).total_seconds() >= settings.WEBHOOK_RETRY_FOR
    return too_old or delivery.attempts >= MAX_DEAD_ATTEMPTS


def _abandon_task(task_id: str) -> None:
    """Mark the task of a dead worker as failed, so it does not stay RUNNING forever."""
    if task_id:
        DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.RUNNING).update(
            status=TaskResultStatus.FAILED,
            finished_at=timezone.now(),
            exception_class_path=f"{WorkerDied.__module__}.{WorkerDied.__qualname__}",
            traceback="WorkerDied: the worker processing this task died (its lease ran out).",
        )
