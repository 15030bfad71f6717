"""What each answer, refusal, delivery outcome and Customer.io call adds to the counters (in this process; the same
under gunicorn: test_under_gunicorn.py), and the queue's gauges, read from the database."""

import json
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from cio import get_client
from cio.metrics import count_api_call
from cio.ratelimit import SharedRateLimiter
from users.models import SegmentChange, Tag, User
from webhooks.metrics import counters
from webhooks.models import WebhookDelivery, WorkerHeartbeat

from ..conftest import make_user, set_settings
from .conftest import parse, sample, value

pytestmark = pytest.mark.django_db


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Outcomes are counted once their transaction commits: here, when the test's (rolled back) one would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


class Moved:
    """How far samples of this process's counts moved since it was made."""

    def __init__(self, *series: tuple):
        self.series = series
        self.before = [sample(name, **labels) for name, labels in series]

    def __call__(self) -> list[float]:
        return [
            sample(name, **labels) - before for (name, labels), before in zip(self.series, self.before, strict=True)
        ]


def requests_total(action, status):
    return ("webhook_requests_total", {"action": action, "status": str(status)})


def refused(reason):
    return ("webhook_refused_requests_total", {"reason": reason})


def processed(action, outcome):
    return ("webhook_deliveries_processed_total", {"action": action, "outcome": outcome})


def duration_count(action):
    return ("webhook_request_duration_seconds_count", {"action": action})


def customerio(api, status):
    return ("customerio_api_requests_total", {"api": api, "status": str(status)})


def test_a_test_webhook(hook, commits):
    moved = Moved(requests_total("test", 200), duration_count("test"), processed("test", "succeeded"))

    with commits():
        assert hook("test").status_code == 200

    assert moved() == [1, 1, 1]


def test_a_synchronous_update_tags_and_its_customerio_calls(hook, emulator, commits):
    make_user()
    moved = Moved(
        requests_total("update_tags", 200), processed("update_tags", "succeeded"), customerio("app", 200), refused("")
    )

    with commits():
        assert hook("update_tags").status_code == 200

    app_calls = [entry for entry in emulator.requests("/v1/") if entry["status"] == 200]
    assert moved() == [1, 1, len(app_calls), 0]
    assert len(app_calls) >= 1


def test_refusals_by_reason(hook, client, settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 4
    moved = Moved(
        requests_total("update_tags", 403),
        requests_total("update_tags", 429),
        requests_total("unknown", 403),
        requests_total("none", 403),
        refused("invalid_key"),
        refused("missing_key"),
        refused("throttled"),
    )

    assert hook("update_tags", key="wrong").status_code == 403
    assert client.post("/?wpf_action=update_tags", "{}", content_type="application/json").status_code == 403
    assert hook("<script>", key="wrong").status_code == 403  # a stranger's action: no new label value
    assert client.post("/?access_key=wrong", "{}", content_type="application/json").status_code == 403
    assert hook("update_tags", key="wrong").status_code == 429

    assert moved() == [2, 1, 1, 1, 3, 1, 1]


def test_refusals_of_requests_with_the_key(hook, client, settings, access_key):
    settings.WEBHOOK_MAX_BODY_BYTES = 100
    moved = Moved(
        requests_total("update_tags", 413),
        refused("too_large"),
        requests_total("update", 400),
        refused("invalid_request"),
    )

    assert hook("update_tags", body={"email": "ann@example.com", "padding": "x" * 200}).status_code == 413
    assert hook("update", body={"no": "contact"}).status_code == 400

    assert moved() == [1, 1, 1, 1]


def test_a_webhook_customerio_fails_and_a_call_that_gets_no_answer(hook, emulator, settings, commits):
    make_user()
    settings.CUSTOMERIO_MAX_RETRIES = 1
    emulator.set_faults(fail_rate=1.0, fail_status=503, path_prefix="/v1/customers/")
    moved = Moved(requests_total("update_tags", 502), processed("update_tags", "failed"), customerio("app", 503))

    with commits():
        assert hook("update_tags").status_code == 502

    assert moved() == [1, 1, 2]
    no_answer = Moved(customerio("track", "error"))
    count_api_call(type(get_client()), api="track", method="POST", path="/x", status=None, duration=0.1)
    assert no_answer() == [1]


def test_queued_deliveries_count_when_their_outcome_is_written(commits):
    delivery = WebhookDelivery.objects.create(action="update", status=WebhookDelivery.Status.PROCESSING)
    moved = Moved(processed("update", "retrying"))

    from webhooks.deliveries import record_outcome
    from webhooks.processing import failure

    outcome = failure(502, "customerio_unavailable", "down", retryable=True)
    with commits():
        assert record_outcome([delivery], outcome, duration_ms=5, retry_at=timezone.now()) == 1
    # Lost to another processing: nothing written, nothing counted.
    with commits():
        assert record_outcome([delivery], outcome, duration_ms=5, retry_at=timezone.now()) == 0

    assert moved() == [1]


def test_rate_limiter_waits_are_counted(monkeypatch):
    slept = []
    monkeypatch.setattr("cio.ratelimit.time.sleep", slept.append)
    waits = iter([0.25, 0.5, 0.0])
    limiter = SharedRateLimiter("metrics-test", rate=1)
    monkeypatch.setattr(limiter, "_try_grant", lambda: next(waits))
    before = sample("customerio_rate_limit_wait_seconds_total")

    limiter.acquire()

    assert slept == [0.25, 0.5]
    assert sample("customerio_rate_limit_wait_seconds_total") - before == pytest.approx(0.75)


@pytest.mark.parametrize("value_sent", ["update_tags", "UPDATE_TAGS", "x" * 500, "", None, ["add"]])
def test_action_labels_come_from_a_fixed_set(value_sent):
    assert counters.action_label(value_sent) in {"update_tags", "update", "add", "test", "none", "unknown"}


def test_the_queue_gauges_are_the_databases(scrape):
    now = timezone.now()
    for status, age in (("queued", 30), ("retrying", 400), ("processing", 5), ("succeeded", 9000)):
        delivery = WebhookDelivery.objects.create(action="update", status=status)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(received_at=now - timedelta(seconds=age))
    seen = now - timedelta(seconds=42)
    WorkerHeartbeat.objects.create(worker_id="w1", seen_at=seen, started_at=seen, host="h", pid=1)
    owed = make_user()
    User.objects.filter(pk=owed.pk).update(password_return_due=True)
    tag = Tag.objects.create(segment_id=77, name="VIP", kind=Tag.Kind.MANUAL)
    SegmentChange.objects.create(user=owed, tag=tag, action="add")
    SegmentChange.objects.create(user=owed, tag=tag, action="remove", sent_at=now)

    samples = parse(scrape())

    assert value(samples, "webhook_deliveries_waiting") == 3
    assert value(samples, "webhook_oldest_waiting_seconds") == pytest.approx(400, abs=5)
    assert value(samples, "worker_last_heartbeat_timestamp_seconds") == pytest.approx(seen.timestamp())
    assert value(samples, "password_returns_owed") == 1
    assert value(samples, "segment_changes_waiting") == 1


def test_with_nothing_waiting_the_gauges_are_zero(scrape):
    samples = parse(scrape())

    assert [
        value(samples, name)
        for name in (
            "webhook_deliveries_waiting",
            "webhook_oldest_waiting_seconds",
            "worker_last_heartbeat_timestamp_seconds",
        )
    ] == [0, 0, 0]


def test_no_secret_in_a_scrape(hook, scrape, access_key, settings):
    set_settings(return_password=True, return_password_field="site_password")
    hook("test")
    hook("update_tags", key=access_key + "x")

    text = scrape()

    assert access_key not in text
    assert settings.CUSTOMERIO_APP_API_KEY not in text
    assert json.dumps(access_key)[1:-1] not in text


def test_a_rate_limited_call_is_counted_by_its_status(hook, emulator, settings, commits):
    make_user()
    settings.CUSTOMERIO_MAX_RETRIES = 0
    emulator.set_faults(fail_rate=1.0, fail_status=429, path_prefix="/v1/customers/")
    moved = Moved(customerio("app", 429))

    with commits():
        assert hook("update_tags").status_code >= 500

    assert moved() == [1]


def test_without_the_database_the_counters_still_go_out(scrape, monkeypatch, caplog):
    def unreachable():
        raise OperationalError("could not connect to server at db.internal as app_user")

    monkeypatch.setattr("webhooks.metrics.collector.queue_backlog", unreachable)

    text = scrape()

    assert "# TYPE webhook_requests_total counter" in text
    assert "webhook_deliveries_waiting" not in text  # deploy/'s WpfusionDatabaseUnreadable fires on its absence
    assert "OperationalError" in caplog.text and "db.internal" not in caplog.text
