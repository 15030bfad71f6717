"""The webhook reads its settings from per-process copies: no configuration query per request, changes at once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from settings_app import freshness
from users.models import User


def configuration_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "settings_app_" in q["sql"]]


@pytest.mark.parametrize("action", ["test", "update"])
def test_a_steady_state_webhook_runs_no_configuration_query(hook, emulator, monkeypatch, action):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")
    assert hook(action).status_code == 200  # the first request loads the settings and the mappings
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)  # inside the second that follows
    with CaptureQueriesContext(connection) as captured:
        response = hook(action)
    assert response.status_code == 200
    assert captured.captured_queries  # the delivery itself is still recorded
    assert configuration_queries(captured) == []


def test_a_key_saved_in_the_admin_works_at_once_in_this_process(admin_client, hook):
    assert hook("test").status_code == 200  # the settings are now held by this process
    form = {
        "new_access_key": "a1b2c3d4-from-wp-fusion",
        "username_format": "email",
        "login_link_lifetime_hours": "72",
        "return_password": "on",
        "return_password_field": "",
    }
    response = admin_client.post(reverse("admin:settings_app_webhooksettings_change"), form)
    assert response.status_code == 302
    hook.access_key = "a1b2c3d4-from-wp-fusion"
    assert hook("test").status_code == 200
