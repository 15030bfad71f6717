"""The queue's edge cases found in review: a leftover task, a delivery that keeps killing its worker, a replay of a
delivery being processed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from webhooks.models import WebhookDelivery
from webhooks.queue import drain, recovery
from webhooks.queue.enqueue import requeue

pytestmark = pytest.mark.django_db


def test_a_leftover_task_does_not_jump_a_retry_backoff(emulator):
    delivery = WebhookDelivery.objects.create(
        action="update_tags",
        contact="ann@example.com",
        contact_type="email",
        contact_key="email:ann@example.com",
        status="retrying",
        attempts=1,
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )
    drain.process(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 1)
    assert emulator.requests() == []


def test_a_delivery_whose_worker_keeps_dying_ends_failed(emulator):
    delivery = WebhookDelivery.objects.create(
        action="update_tags",
        contact="ann@example.com",
        contact_type="email",
        contact_key="email:ann@example.com",
        status="processing",
        attempts=recovery.MAX_DEAD_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    recovery.sweep()
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "worker_died" in delivery.error


def test_replay_leaves_a_delivery_being_processed_alone(emulator):
    delivery = WebhookDelivery.objects.create(
        action="update_tags",
        contact="ann@example.com",
        status="processing",
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )
    assert requeue(delivery) is False
    delivery.refresh_from_db()
    assert delivery.status == "processing"
