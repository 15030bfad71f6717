"""One Customer.io delivery is processed once, however often Customer.io retries it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from users.models import User
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def test_a_finished_delivery_is_answered_again_without_work(hook, emulator):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")
    headers = {"x-cio-idempotency-key": "idem-1", "x-cio-delivery-id": "dlv-1"}
    first = hook("update_tags", headers=headers)
    emulator.clear_requests()
    second = hook("update_tags", headers=headers)
    assert second.status_code == 200
    assert second.json() == {**first.json(), "duplicate": True}
    assert emulator.requests() == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.cio_delivery_id, delivery.idempotency_key) == (2, "dlv-1", "idem-1")


def test_the_delivery_id_identifies_a_delivery_without_an_idempotency_key(hook, emulator):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")
    hook("update_tags", headers={"x-cio-delivery-id": "dlv-7"})
    assert hook("update_tags", headers={"x-cio-delivery-id": "dlv-7"}).json()["duplicate"] is True
    assert WebhookDelivery.objects.count() == 1


def test_requests_without_either_header_get_a_row_each(hook, emulator):
    hook("test", body={})
    hook("test", body={})
    assert WebhookDelivery.objects.count() == 2


def test_a_delivery_still_in_progress_asks_customerio_to_come_back(hook, emulator):
    WebhookDelivery.objects.create(
        dedup_key="key:idem-2",
        idempotency_key="idem-2",
        action="add",
        status="processing",
        lease_expires_at=timezone.now() + timedelta(seconds=30),
        attempts=1,
    )
    response = hook("add", headers={"x-cio-idempotency-key": "idem-2"})
    assert response.status_code == 503
    assert response.json()["error"] == "in_progress"
    assert int(response["Retry-After"]) > 0
    assert User.objects.count() == 0
    assert emulator.requests() == []


def test_a_delivery_whose_processing_died_is_taken_over(hook, emulator):
    WebhookDelivery.objects.create(
        dedup_key="key:idem-3",
        idempotency_key="idem-3",
        action="add",
        status="processing",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        attempts=1,
    )
    response = hook("add", headers={"x-cio-idempotency-key": "idem-3"})
    assert response.status_code == 200
    assert User.objects.count() == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_a_failed_delivery_is_processed_again(hook, emulator):
    headers = {"x-cio-idempotency-key": "idem-4"}
    assert hook("add", email="late@example.com", headers=headers).status_code == 422
    emulator.add_customer(email="late@example.com", attributes={"first_name": "Late"})
    response = hook("add", email="late@example.com", headers=headers)
    assert response.status_code == 200 and response.json()["created"] is True
    assert WebhookDelivery.objects.get().attempts == 2


def test_stored_bodies_mask_passwords(hook, emulator):
    from .conftest import set_settings

    set_settings(return_password_field="wp_login_code")
    hook("test", body={"email": "ann@example.com", "user_pass": "hunter22", "wp_login_code": "abc", "x": 1})
    delivery = WebhookDelivery.objects.get()
    assert delivery.body == {"email": "ann@example.com", "user_pass": "********", "wp_login_code": "********", "x": 1}
