"""What the webhook actions ask of Customer.io, end to end against the emulator: the calls each action makes, and a
Customer.io that is down or too slow answered with a 502 that leaves no half-made user."""

import pytest

from users.models import User

from .conftest import make_user, set_settings

pytestmark = pytest.mark.django_db


def test_customerio_down_is_a_502_and_leaves_no_half_user(hook, emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 1
    emulator.set_faults(fail_rate=1.0, fail_status=503, path_prefix="/v1/customers/ann@example.com/segments")
    response = hook("add")
    assert response.status_code in (502,)
    assert response.json()["error"] == "upstream_error"
    assert User.objects.count() == 0  # the segments call failed after the attributes call: all rolled back


def test_the_sync_deadline_answers_502_in_time(hook, emulator, settings):
    settings.WEBHOOK_SYNC_DEADLINE = 0.5
    make_user()
    emulator.set_faults(latency_ms=2000)
    response = hook("update_tags")
    assert response.status_code == 502


def test_calls_per_action(hook, emulator):
    set_settings(return_password=True, return_password_field="site_password")
    counts = {}
    for action, email in [
        ("test", "ann@example.com"),
        ("add", "ann@example.com"),
        ("update", "ann@example.com"),
        ("update_tags", "ann@example.com"),
    ]:
        emulator.clear_requests()
        assert hook(action, email=email).status_code == 200
        counts[action] = emulator.call_counts()
    assert counts["test"] == {}
    assert counts["add"] == {"app": 2, "track": 1}
    assert counts["update"] == {"app": 2}
    assert counts["update_tags"] == {"app": 1}
