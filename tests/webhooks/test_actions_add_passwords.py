"""Return Password on the add action, end to end against the emulator: a generated password goes to the chosen
Customer.io field and nowhere else (not in answers, deliveries, logs or mail), nothing goes without a field, a failed
return is retried with a fresh password, and a user who logged in meanwhile keeps theirs."""

import json
import logging

import pytest
from django.core import mail

from users.models import ActivityLog, User
from webhooks.models import WebhookDelivery

from .conftest import app_calls, set_settings, track_calls

pytestmark = pytest.mark.django_db


def everything_stored_and_logged(response, caplog, json_log=None) -> str:
    deliveries = [json.dumps(row, default=str) for row in WebhookDelivery.objects.values()]
    logs = [json.dumps(row, default=str) for row in ActivityLog.objects.values()]
    written = [response.content.decode(), caplog.text, json_log.text if json_log else ""]
    return "\n".join([*written, *deliveries, *logs, *(m.body for m in mail.outbox)])


def test_return_password_writes_the_chosen_field_and_nowhere_else(hook, emulator, caplog, json_log):
    caplog.set_level(logging.DEBUG)
    set_settings(return_password=True, return_password_field="site_password")
    response = hook("add")
    assert response.status_code == 200, response.content
    [put] = track_calls(emulator)
    cio_id = emulator.customer("ann@example.com")["cio_id"]
    assert (put["method"], put["path"]) == ("PUT", f"/api/v1/customers/cio_{cio_id}")  # the person, whatever email
    # WP Fusion's Return Password: the password and the account it opens, in the same call.
    assert put["body"]["_update"] is True
    assert set(put["body"]) == {"site_password", "user_login", "user_id", "user_registered", "_update"}
    password = emulator.customer("ann@example.com")["attributes"]["site_password"]
    assert len(password) >= 16
    user = User.objects.get()
    assert (put["body"]["user_login"], put["body"]["user_id"]) == (user.username, user.pk)
    assert put["body"]["user_registered"] == int(user.date_joined.timestamp())  # Customer.io's dates: Unix seconds
    assert user.check_password(password)
    assert not user.password_return_due
    assert ActivityLog.objects.filter(message="Returned generated password to Customer.io field site_password").exists()
    assert password not in everything_stored_and_logged(response, caplog, json_log)
    assert len(app_calls(emulator)) == 2


def test_return_password_on_without_a_field_returns_nothing(hook, emulator):
    set_settings(return_password=True, return_password_field="")
    hook("add")
    assert track_calls(emulator) == []
    assert not User.objects.get().has_usable_password()


def test_a_failed_password_return_is_retried_with_a_fresh_password(hook, emulator, caplog, json_log):
    set_settings(return_password=True, return_password_field="site_password")
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/", method="PUT")
    headers = {"x-cio-idempotency-key": "delivery-1"}
    first = hook("add", headers=headers)
    assert first.status_code == 502
    assert first.json()["error"] == "upstream_error"
    user = User.objects.get()
    assert user.password_return_due
    assert WebhookDelivery.objects.get().status == "failed"

    emulator.set_faults()
    again = hook("add", headers=headers)
    assert again.status_code == 200, again.content
    assert again.json()["created"] is False
    user.refresh_from_db()
    password = emulator.customer("ann@example.com")["attributes"]["site_password"]
    assert user.check_password(password)
    assert not user.password_return_due
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert password not in everything_stored_and_logged(again, caplog, json_log)


def test_a_user_who_logged_in_meanwhile_keeps_their_password(hook, emulator):
    from django.utils import timezone

    set_settings(return_password=True, return_password_field="site_password")
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/", method="PUT")
    hook("add")
    user = User.objects.get()
    user.set_password("chosen-by-them")
    user.last_login = timezone.now()
    user.save()
    emulator.set_faults()
    emulator.clear_requests()
    assert hook("update_tags").status_code == 200
    user.refresh_from_db()
    assert user.check_password("chosen-by-them") and not user.password_return_due
    assert track_calls(emulator) == []
