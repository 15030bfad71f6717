"""Defences found in review: secrets under unusual names, passwords people chose."""

import dataclasses
import json

import pytest

from settings_app.models import FieldMapping
from users.models import ActivityLog, User
from webhooks import actions
from webhooks.models import WebhookDelivery

from .conftest import set_settings

pytestmark = pytest.mark.django_db


def test_an_attribute_mapped_to_the_password_is_masked_whatever_its_name(hook, emulator):
    FieldMapping.objects.create(cio_attribute="initial_code", user_field="password")
    emulator.add_customer(email="ann@example.com", attributes={"first_name": "Ann", "initial_code": "hunter2-xyz"})
    body = {"email": "ann@example.com", "attributes": {"first_name": "Ann", "initial_code": "hunter2-xyz"}}
    response = hook("add", body=body)
    assert response.status_code == 200
    assert User.objects.get().check_password("hunter2-xyz")
    stored = json.dumps(list(WebhookDelivery.objects.values("body", "result", "query")), default=str)
    logged = json.dumps(list(ActivityLog.objects.values("message", "context")), default=str)
    assert "hunter2-xyz" not in stored + logged


def test_a_password_the_person_chose_is_never_replaced(hook, emulator):
    set_settings(return_password=True, return_password_field="site_password")
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/", method="PUT")
    assert hook("add").status_code == 502
    user = User.objects.get()
    assert user.password_return_due
    # The set-password link of the reset form does this; it does not log the person in.
    user.set_password("chosen-by-them")
    user.save()
    emulator.set_faults()
    emulator.clear_requests()
    assert hook("update_tags").status_code == 200
    user.refresh_from_db()
    assert user.check_password("chosen-by-them") and not user.password_return_due
    assert emulator.requests("/api/") == []


def test_an_unexpected_error_keeps_its_traceback(hook, emulator, monkeypatch):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")

    def broken(request):
        raise RuntimeError("a bug in the site")

    monkeypatch.setitem(
        actions.ACTIONS, "update_tags", dataclasses.replace(actions.ACTIONS["update_tags"], handler=broken)
    )
    response = hook("update_tags")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "a bug in the site" not in response.content.decode()
    delivery = WebhookDelivery.objects.get()
    assert "RuntimeError: a bug in the site" in delivery.traceback


def test_a_forwarded_for_that_is_not_an_address_is_ignored(hook, emulator, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    hook.client.post(
        hook.url("test"),
        data="{}",
        content_type="application/json",
        REMOTE_ADDR="10.0.0.5",
        HTTP_X_FORWARDED_FOR="203.0.113.9:4711",
    )
    assert WebhookDelivery.objects.get().remote_ip == "10.0.0.5"


def test_requests_with_a_wrong_key_are_not_stored(hook):
    assert hook("add", key="wrong-key", body={"email": "ann@example.com", "note": "x" * 1000}).status_code == 403
    assert not WebhookDelivery.objects.exists()
