"""The outbox through the real background worker: profile changes and events made on the site reach Customer.io
through injected 500s and a worker killed mid-request, nothing lost and no event counted twice (Customer.io
deduplicates events by their ULID, which a resend keeps)."""

import signal
import time

import pytest

from tests.worker_processes import start_worker, wait_for
from users.models import OutboxEntry, User
from users.tracking import track

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.concurrency]

PEOPLE = 300


@pytest.fixture
def worker_env(emulator_env):
    return {
        **emulator_env,
        "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
        "WEBHOOK_RETRY_MAX_SECONDS": "1",
        "WEBHOOK_SWEEP_SECONDS": "0.3",
        "CUSTOMERIO_MAX_RETRIES": "0",
    }


def make_people() -> list[User]:
    users = []
    for n in range(PEOPLE):
        user = User.objects.create_user(username=f"p{n}", email=f"p{n}@example.com")
        track(user, "course_completed", {"course": n})
        users.append(user)
    return users


def everyone_arrived(emulator) -> bool:
    return (
        all(emulator.customer(f"p{n}@example.com") for n in (0, PEOPLE // 2, PEOPLE - 1))
        and len(emulator.all_events("course_completed")) == PEOPLE
    )


def assert_each_arrived_once(emulator):
    events = emulator.all_events("course_completed")
    assert sorted(event["attributes"]["course"] for event in events) == list(range(PEOPLE))
    for n in range(PEOPLE):
        assert emulator.customer(f"p{n}@example.com")["attributes"]["created_at"]


def stop(worker):
    worker.send_signal(signal.SIGTERM)
    worker.wait(20)


def test_injected_500s_lose_nothing(cio_emulator, worker_env):
    make_people()
    # Seeded, so the first batch request fails: the test cannot pass without a real failure to retry.
    cio_emulator.set_faults(fail_rate=0.5, fail_status=500, path_prefix="/api/v2/batch", seed=1)
    worker = start_worker(worker_env)
    try:
        wait_for(lambda: not OutboxEntry.objects.exists(), what="the outbox sent")
    finally:
        stop(worker)
    statuses = [call["status"] for call in cio_emulator.requests("/api/v2/batch")]
    assert 500 in statuses and 200 in statuses
    assert_each_arrived_once(cio_emulator)


def test_a_killed_worker_loses_nothing_and_counts_no_event_twice(cio_emulator, worker_env):
    make_people()
    cio_emulator.set_faults(latency_ms=3000, path_prefix="/api/v2/batch")  # the worker is mid-request when killed
    first = start_worker({**worker_env, "WEBHOOK_LEASE_SECONDS": "3"})
    try:
        wait_for(lambda: OutboxEntry.objects.filter(claimed_until__isnull=False).exists(), what="a claim")
        time.sleep(0.5)
    finally:
        first.kill()
        first.wait(10)
    assert OutboxEntry.objects.count() == 2 * PEOPLE  # claimed, not lost
    cio_emulator.set_faults()
    second = start_worker(worker_env)
    try:
        wait_for(lambda: not OutboxEntry.objects.exists(), what="the outbox sent")
        wait_for(lambda: everyone_arrived(cio_emulator), what="everyone in Customer.io")
    finally:
        stop(second)
    assert_each_arrived_once(cio_emulator)
