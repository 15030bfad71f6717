"""Queued mode through a real `webhook_worker` process."""

import io
import json
import signal
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from settings_app.models import WebhookSettings
from users.models import ActivityLog, ContactLock, User
from webhooks.models import WebhookDelivery
from webhooks.queue.enqueue import enqueue

from .workers import queued, run_worker_until_idle, start_worker, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def make_user(email="ann@example.com"):
    return User.objects.create_user(username=email, email=email, password="x")


def test_queued_add_update_and_update_tags_end_to_end(client, worker_env, cio_emulator):
    accepted = queued(client, "add")
    assert accepted["status"] == "queued" and accepted["delivery_id"]
    assert cio_emulator.requests() == []  # accepted without calling Customer.io
    assert WebhookDelivery.objects.get(pk=accepted["delivery_id"]).status == "queued"
    run_worker_until_idle(worker_env)
    delivery = WebhookDelivery.objects.get(pk=accepted["delivery_id"])
    assert delivery.status == "succeeded", delivery.error
    assert delivery.result["created"] is True
    user = User.objects.get()
    assert user.first_name == "Ann" and sorted(user.tags.values_list("name", flat=True)) == ["Newsletter", "VIP"]

    cio_emulator.add_customer(email="ann@example.com", attributes={"first_name": "Annie"}, segments=[3])
    first = queued(client, "update")
    run_worker_until_idle(worker_env)
    second = queued(client, "update_tags")
    run_worker_until_idle(worker_env)
    assert WebhookDelivery.objects.get(pk=first["delivery_id"]).status == "succeeded"
    assert WebhookDelivery.objects.get(pk=second["delivery_id"]).result["tags"] == ["Active customers"]
    user.refresh_from_db()
    assert user.first_name == "Annie"


def test_the_background_setting_queues_without_the_parameter(client, worker_env, cio_emulator):
    WebhookSettings.load()
    WebhookSettings.objects.update(process_in_background=True)
    key = WebhookSettings.load().access_key
    response = client.post(
        f"/?wpf_action=update_tags&access_key={key}",
        data='{"email": "ann@example.com"}',
        content_type="application/json",
    )
    assert response.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [('{"email": "ann@example.com", "async": true}', "application/json"), ("email=ann%40example.com&async=1", None)],
)
def test_async_in_the_body_queues_as_in_the_query(client, body, content_type):
    """WP Fusion reads `async` from the request as a whole: a journey that puts it in a JSON or form body is queued."""
    key = WebhookSettings.load().access_key
    response = client.post(
        f"/?wpf_action=update_tags&access_key={key}",
        data=body,
        content_type=content_type or "application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert WebhookDelivery.objects.get(pk=response.json()["delivery_id"]).status == "queued"


def test_async_false_in_the_body_with_async_in_the_query_follows_the_query(client, cio_emulator):
    key = WebhookSettings.load().access_key
    response = client.post(
        f"/?wpf_action=update_tags&access_key={key}&async=true",
        data='{"email": "ann@example.com", "async": false}',
        content_type="application/json",
    )
    assert response.json()["status"] == "queued"


def test_a_retried_queued_delivery_is_accepted_once(client, worker_env):
    headers = {"x-cio-idempotency-key": "q-1"}
    first = queued(client, "update_tags", headers=headers)
    again = queued(client, "update_tags", headers=headers)
    assert again == {**first, "duplicate": True}
    assert WebhookDelivery.objects.count() == 1
    assert DBTaskResult.objects.count() == 1


def test_a_rollback_leaves_neither_row_nor_task(worker_env):
    with pytest.raises(RuntimeError), transaction.atomic():
        delivery = WebhookDelivery.objects.create(action="update_tags", contact="a@example.com", status="queued")
        enqueue(delivery)
        assert DBTaskResult.objects.count() == 1
        raise RuntimeError("the request failed after enqueueing")
    assert WebhookDelivery.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


def test_503_is_retried_with_backoff_then_succeeds(client, worker_env, cio_emulator):
    make_user()
    cio_emulator.set_faults(fail_rate=1.0, fail_status=503)
    accepted = queued(client, "update_tags")
    run_worker_until_idle(worker_env)
    delivery = WebhookDelivery.objects.get(pk=accepted["delivery_id"])
    assert delivery.status == "retrying"
    failed_attempts = delivery.attempts  # the worker may already have retried once within its run
    assert failed_attempts >= 1
    # A backoff: the retry waits after the failed attempt (compared with the attempt's own record, not with the
    # clock once the worker has exited, which a loaded machine makes late).
    assert delivery.next_attempt_at > delivery.updated_at
    assert DBTaskResult.objects.filter(status="READY").count() == 1

    cio_emulator.set_faults()
    wait_for(lambda: timezone.now() >= WebhookDelivery.objects.get().next_attempt_at, 10, "the retry time")
    run_worker_until_idle(worker_env)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", failed_attempts + 1)
    assert [r["status"] for r in cio_emulator.requests("/v1/")] == [503] * failed_attempts + [200]


def test_a_permanent_error_fails_at_once(client, worker_env, cio_emulator):
    accepted = queued(client, "add", email="nobody@example.com")
    run_worker_until_idle(worker_env)
    delivery = WebhookDelivery.objects.get(pk=accepted["delivery_id"])
    assert (delivery.status, delivery.attempts, delivery.http_status) == ("failed", 1, 422)
    assert delivery.result["error"] == "contact_not_found"
    assert DBTaskResult.objects.filter(status="READY").count() == 0


def test_a_newer_delivery_supersedes_the_contacts_waiting_ones(client, worker_env, cio_emulator):
    make_user()
    ids = [queued(client, "update_tags")["delivery_id"] for _ in range(3)]
    run_worker_until_idle(worker_env)
    assert len(cio_emulator.requests("/v1/customers/ann@example.com/segments")) == 1
    rows = WebhookDelivery.objects.filter(pk__in=ids)
    assert {row.status for row in rows} == {"succeeded"}
    assert len({json.dumps(row.result, sort_keys=True) for row in rows}) == 1


def test_the_strongest_waiting_action_wins(client, worker_env, cio_emulator):
    queued(client, "update_tags")
    queued(client, "add")
    queued(client, "update")
    run_worker_until_idle(worker_env)
    assert User.objects.count() == 1
    assert {row.result.get("created") for row in WebhookDelivery.objects.all()} == {True}
    assert len(cio_emulator.requests("/v1/")) == 2


def test_waiting_updates_share_one_attributes_call_per_hundred(client, worker_env, cio_emulator, settings):
    cio_emulator.configure(rate_limit=0)
    worker_env = {**worker_env, "CUSTOMERIO_APP_API_RATE": "0"}
    cio_emulator.load(
        {"customers": [{"email": f"u{n}@example.com", "attributes": {"first_name": f"U{n}"}} for n in range(250)]}
    )
    User.objects.bulk_create(
        [
            User(
                username=f"u{n}",
                email=f"u{n}@example.com",
                email_normalized=f"u{n}@example.com",
                role_id=User._meta.get_field("role").related_model.get_default().pk,
            )
            for n in range(250)
        ]
    )
    for n in range(250):
        queued(client, "update", email=f"u{n}@example.com")
    run_worker_until_idle(worker_env, timeout=180)
    assert len(cio_emulator.requests("/v1/customers/attributes")) == 3
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 250
    assert User.objects.get(email_normalized="u249@example.com").first_name == "U249"


def test_attributes_in_the_body_save_the_attributes_call(client, worker_env, cio_emulator, access_key=None):
    make_user()
    body = {"email": "ann@example.com", "attributes": {"first_name": "FromBody", "last_name": "Smith"}}
    queued(client, "update", body=body)
    run_worker_until_idle(worker_env)
    key = WebhookSettings.load().access_key
    sync = client.post(f"/?wpf_action=update&access_key={key}", data=json.dumps(body), content_type="application/json")
    assert sync.status_code == 200
    assert cio_emulator.requests("/v1/customers/ann@example.com/attributes") == []
    assert User.objects.get().first_name == "FromBody"


def test_a_masked_password_in_a_stored_body_is_fetched_instead(client, worker_env, cio_emulator):
    body = {"email": "ann@example.com", "attributes": {"first_name": "Ann", "user_pass": "secret-in-body"}}
    queued(client, "add", body=body)
    assert "secret-in-body" not in json.dumps(WebhookDelivery.objects.get().body)
    run_worker_until_idle(worker_env)
    assert len(cio_emulator.requests("/v1/customers/ann@example.com/attributes")) == 1


def test_two_workers_stay_under_the_rate_limit(client, worker_env, cio_emulator):
    emails = [f"w{n}@example.com" for n in range(30)]
    cio_emulator.load({"customers": [{"email": email, "segments": [1]} for email in emails]})
    for email in emails:
        make_user(email)
        queued(client, "update_tags", email=email)
    # Small batches (two contacts), read one call per contact: many calls from both workers at once.
    worker_env = {**worker_env, "WEBHOOK_PLAN_CLAIM_LIMIT": "1"}
    workers = [start_worker(worker_env) for _ in range(2)]
    try:
        wait_for(lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 30, 60, "the queue to drain")
    finally:
        for worker in workers:
            stop(worker)
    calls = [(r["path"], r["status"]) for r in cio_emulator.requests("/v1/")]
    assert [status for _, status in calls].count(429) == 0, calls
    # Each contact's segments read once; a planner may also have listed the segments to weigh a scan.
    per_contact = sorted(path for path, _ in calls if path.startswith("/v1/customers/"))
    assert per_contact == sorted(f"/v1/customers/{email}/segments" for email in emails), calls
    assert {path for path, _ in calls} - set(per_contact) <= {"/v1/segments"}, calls


@pytest.mark.concurrency
def test_fifty_identical_adds_make_one_user(client, worker_env, cio_emulator):
    for n in range(50):
        queued(client, "add", headers={"x-cio-delivery-id": f"d-{n}"})
    workers = [start_worker(worker_env) for _ in range(2)]
    try:
        wait_for(lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 50, 60, "the queue to drain")
    finally:
        for worker in workers:
            stop(worker)
    assert User.objects.count() == 1


@pytest.mark.concurrency
def test_a_killed_worker_is_replaced_and_the_delivery_finished_once(client, worker_env, cio_emulator):
    env = {**worker_env, "WEBHOOK_LEASE_SECONDS": "2", "WEBHOOK_SWEEP_SECONDS": "0.5"}
    cio_emulator.set_faults(latency_ms=4000, path_prefix="/v1/customers/ann@example.com/attributes")
    accepted = queued(client, "add")
    doomed = start_worker(env)
    try:
        wait_for(lambda: cio_emulator.requests("/v1/customers/ann@example.com/attributes"), 30, "the slow call")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        stop(doomed)
    assert WebhookDelivery.objects.get().status == "processing"
    cio_emulator.set_faults()
    rescuer = start_worker(env)
    try:
        wait_for(lambda: WebhookDelivery.objects.get().status == "succeeded", 60, "another worker to finish it")
    finally:
        stop(rescuer)
    assert User.objects.count() == 1
    delivery = WebhookDelivery.objects.get(pk=accepted["delivery_id"])
    assert delivery.attempts == 2
    assert not DBTaskResult.objects.filter(status="RUNNING").exists()


def test_replay_from_the_admin(client, worker_env, cio_emulator):
    make_user()
    accepted = queued(client, "update_tags")
    run_worker_until_idle(worker_env)
    admin = User.objects.create_superuser(username="boss", email="boss@example.com", password="pw")
    client.force_login(admin)
    response = client.post(
        "/admin/webhooks/webhookdelivery/", {"action": "replay", "_selected_action": [accepted["delivery_id"]]}
    )
    assert response.status_code == 302
    assert WebhookDelivery.objects.get(pk=accepted["delivery_id"]).status == "queued"
    run_worker_until_idle(worker_env)
    delivery = WebhookDelivery.objects.get(pk=accepted["delivery_id"])
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert len(cio_emulator.requests("/v1/customers/ann@example.com/segments")) == 2


def test_webhook_queue_reports_and_alerts(client, worker_env):
    queued(client, "update_tags")
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(seconds=120))
    out = io.StringIO()
    call_command("webhook_queue", stdout=out)
    assert "queued      1" in out.getvalue() and "oldest waiting: 120 s" in out.getvalue()
    with pytest.raises(Exception, match="older"):
        call_command("webhook_queue", "--max-age", "60", stdout=io.StringIO())


def test_pruning_keeps_recent_and_waiting_rows(client, worker_env):
    make_user()
    old = timezone.now() - timedelta(days=40)
    finished = WebhookDelivery.objects.create(action="update_tags", status="succeeded")
    waiting = WebhookDelivery.objects.create(action="update_tags", status="queued")
    recent = WebhookDelivery.objects.create(action="update_tags", status="failed")
    WebhookDelivery.objects.filter(pk__in=[finished.pk, waiting.pk]).update(received_at=old)
    ActivityLog.objects.create(source="webhook", message="old")
    ActivityLog.objects.create(source="webhook", message="new")
    ActivityLog.objects.filter(message="old").update(created_at=old)
    ContactLock.objects.create(key="email:ann@example.com")
    call_command("prune_webhook_data", "--days", "30", stdout=io.StringIO())
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {waiting.pk, recent.pk}
    assert list(ActivityLog.objects.values_list("message", flat=True)) == ["new"]
    assert not ContactLock.objects.exists()
