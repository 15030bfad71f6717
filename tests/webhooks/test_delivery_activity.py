"""Failed webhooks reach the activity log (once, not per retry), and every line names the delivery it came from."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from users.models import ActivityLog, Role, User
from webhooks.models import WebhookDelivery
from webhooks.queue import WorkerDied, drain, recovery
from webhooks.queue.enqueue import enqueue

from .conftest import set_settings

pytestmark = pytest.mark.django_db


def make_user(email="ann@example.com", **extra):
    return User.objects.create_user(username=email, email=email, password="original-pw", **extra)


def lines(**filters):
    return list(ActivityLog.objects.filter(**filters).order_by("id"))


# Failures in the activity log -------------------------------------------------------------------------------------


def test_a_contact_customerio_does_not_know_is_logged_with_its_delivery(hook, emulator):
    response = hook("add", "nobody@example.com")
    assert response.status_code == 422
    delivery = WebhookDelivery.objects.get()
    [line] = lines(level=ActivityLog.Level.WARNING)
    assert line.delivery_id == delivery.pk
    assert "add for nobody@example.com failed: 422 contact_not_found" in line.message
    assert line.context["http_status"] == 422


def test_customerio_down_is_logged_as_an_error(hook, emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    make_user()
    emulator.set_faults(fail_rate=1.0, fail_status=500)
    response = hook("update_tags")
    assert response.status_code == 502
    [line] = lines(level=ActivityLog.Level.ERROR)
    assert line.delivery_id == WebhookDelivery.objects.get().pk
    assert "update_tags for ann@example.com failed: 502 upstream_error" in line.message
    assert hook.access_key not in line.message


def test_a_bad_request_from_a_caller_with_the_key_is_logged(hook, emulator):
    response = hook("add", body={"name": "no contact here"})
    assert response.status_code == 400
    [line] = lines(level=ActivityLog.Level.WARNING)
    assert line.delivery_id == WebhookDelivery.objects.get().pk
    assert "refused: 400 no_contact" in line.message


def test_a_success_logs_no_failure(hook, emulator):
    make_user()
    assert hook("update_tags").status_code == 200
    assert lines(level__in=[ActivityLog.Level.WARNING, ActivityLog.Level.ERROR]) == []


def queued_delivery(action="update_tags", email="ann@example.com"):
    return WebhookDelivery.objects.create(
        action=action,
        contact=email,
        contact_type="email",
        contact_key=f"email:{email}",
        status="queued",
    )


def test_a_queued_delivery_logs_its_final_failure_once_not_each_retry(emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    make_user()
    emulator.set_faults(fail_rate=1.0, fail_status=503)
    delivery = queued_delivery()
    for _ in range(3):  # an outage: three attempts, each retried later
        drain.process(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == "retrying"
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert lines(level=ActivityLog.Level.ERROR) == []

    settings.WEBHOOK_RETRY_FOR = 0  # the next failure is the last
    drain.process(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 4
    [line] = lines(level=ActivityLog.Level.ERROR)
    assert line.delivery_id == delivery.pk
    assert "gave up after 0 s of retries" in line.message


def test_a_queued_permanent_failure_is_logged_at_once(emulator):
    delivery = queued_delivery("add", "nobody@example.com")
    drain.process(delivery.pk)
    [line] = lines(level=ActivityLog.Level.WARNING)
    assert (line.delivery_id, line.context["error"]) == (delivery.pk, "contact_not_found")


def test_a_delivery_whose_worker_keeps_dying_is_logged_and_its_task_error_reads(emulator):
    delivery = WebhookDelivery.objects.create(
        action="update_tags",
        contact="ann@example.com",
        contact_type="email",
        contact_key="email:ann@example.com",
        status="processing",
        attempts=recovery.MAX_DEAD_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    enqueue(delivery)
    DBTaskResult.objects.update(status="RUNNING", started_at=timezone.now())
    recovery.sweep()
    task = DBTaskResult.objects.get()
    [error] = task.task_result.errors
    assert error.exception_class is WorkerDied
    assert "died" in error.traceback
    [line] = lines(level=ActivityLog.Level.ERROR)
    assert line.delivery_id == delivery.pk and "worker_died" in line.message


# Lines know their delivery ----------------------------------------------------------------------------------------


def test_every_line_of_a_synchronous_delivery_names_it(hook, emulator):
    hook("add")
    delivery = WebhookDelivery.objects.get()
    written = lines()
    assert len(written) >= 3  # created, meta loaded, tags loaded
    assert {line.delivery_id for line in written} == {delivery.pk}


def test_every_line_of_a_queued_delivery_names_it(emulator):
    delivery = queued_delivery("add")
    drain.process(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    written = lines()
    assert written and {line.delivery_id for line in written} == {delivery.pk}


def test_lines_written_outside_a_delivery_name_none(admin_client):
    admin_client.post(reverse("admin:settings_app_webhooksettings_regenerate"))
    [line] = lines()
    assert line.delivery_id is None


def test_the_delivery_page_lists_its_activity_lines(hook, emulator, admin_client):
    hook("add")
    hook("update_tags", "bob@example.com")  # another delivery's lines stay off the first one's page
    delivery = WebhookDelivery.objects.get(action="add")
    page = admin_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])).content.decode()
    shown = page.split('class="delivery-activity"', 1)[1].split("</table>", 1)[0]
    assert "Created user ann@example.com (ann@example.com)" in shown
    assert "Loaded tags for ann@example.com" in shown
    assert "bob@example.com" not in shown


# Account changes worth a line -------------------------------------------------------------------------------------


def test_a_role_change_on_an_existing_user_is_logged(hook, emulator):
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    make_user()
    response = hook("add", role="customer")
    assert response.status_code == 200 and "role" in response.json()["updated_fields"]
    [line] = [line for line in lines() if "role" in line.message]
    assert line.message == "Changed role of ann@example.com from Subscriber to Customer"
    assert line.context == {"role": "customer", "previous_role": "subscriber"}


def test_a_new_user_without_a_usable_password_gets_a_notice(hook, emulator):
    set_settings(return_password=True, return_password_field="")  # the default: on, with no field
    hook("add")
    user = User.objects.get()
    assert not user.has_usable_password()
    [line] = lines(level=ActivityLog.Level.NOTICE)
    assert line.user == user
    assert "has no usable password (Return Password is on but no Customer.io field is chosen)" in line.message
    assert "password reset" in line.message


def test_a_new_user_with_a_returned_password_gets_no_such_notice(hook, emulator):
    set_settings(return_password=True, return_password_field="site_password")
    hook("add")
    assert User.objects.get().has_usable_password()
    assert [line for line in lines() if "no usable password" in line.message] == []
