"""Customer.io follows tags applied on the site: the outbox drained by real `webhook_worker` processes, against the
emulator over loopback HTTP. Counts come from the emulator's request log."""

import signal
import time

import pytest
from django.db import transaction

from settings_app.models import WebhookSettings
from tests.worker_processes import run_worker_until_idle, start_worker, wait_for
from users.access import apply_tags, remove_tags
from users.emails import normalize_email
from users.models import ActivityLog, Role, SegmentChange, Tag, User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COURSE = {"id": 10, "name": "Course done", "type": "manual"}
USERS = 2500


def person(n: int) -> dict:
    return {"email": f"p{n}@example.com", "cio_id": f"cio{n:05d}", "segments": []}


@pytest.fixture
def course(db):
    return Tag.objects.create(segment_id=10, name="Course done", kind=Tag.Kind.MANUAL)


@pytest.fixture
def worker_env(emulator_env, cio_emulator):
    return {
        **emulator_env,
        "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
        "WEBHOOK_RETRY_MAX_SECONDS": "1",
        "WEBHOOK_SWEEP_SECONDS": "0.3",
        "CUSTOMERIO_MAX_RETRIES": "0",
    }


def make_users(numbers, linked=True) -> list[User]:
    role = Role.get_default()
    return User.objects.bulk_create(
        [
            User(
                username=f"p{n}@example.com",
                email=f"p{n}@example.com",
                email_normalized=normalize_email(f"p{n}@example.com"),
                cio_id=f"cio{n:05d}" if linked else None,
                role=role,
                password="!",
            )
            for n in numbers
        ]
    )


def segment_calls(cio, verb="add_customers") -> list[dict]:
    return [entry for entry in cio.requests("/api/v1/segments/") if entry["path"].endswith(verb)]


def members(cio, segment_id=10) -> set[str]:
    found, start = set(), ""
    import requests

    while True:
        answer = requests.get(
            f"{cio.url}/v1/segments/{segment_id}/membership",
            params={"limit": 30000, **({"start": start} if start else {})},
            headers={"Authorization": "Bearer emulator-app-key"},
            timeout=30,
        ).json()
        found.update(identifiers["cio_id"] for identifiers in answer["identifiers"])
        start = answer.get("next")
        if not start:
            return found


def apply_to_everyone(users, tag):
    with transaction.atomic():
        for user in users:
            apply_tags(user, tag)


def test_2500_users_go_out_in_3_add_customers_calls(cio_emulator, worker_env, course):
    cio_emulator.reset({"segments": [COURSE], "customers": [person(n) for n in range(USERS)]})
    users = make_users(range(USERS))
    apply_to_everyone(users, course)
    cio_emulator.clear_requests()

    run_worker_until_idle(worker_env)

    calls = segment_calls(cio_emulator)
    assert len(calls) == 3
    assert sorted(len(call["body"]["ids"]) for call in calls) == [500, 1000, 1000]
    assert {call["query"]["id_type"] for call in calls} == {"cio_id"}
    assert len(members(cio_emulator)) == USERS
    assert SegmentChange.objects.filter(sent_at__isnull=True).count() == 0


def test_ids_are_grouped_by_id_type_and_unknown_people_are_never_sent(cio_emulator, worker_env, course):
    known_by_email = {"email": "mail@example.com", "cio_id": "cio-mail", "segments": []}
    cio_emulator.reset({"segments": [COURSE], "customers": [person(1), known_by_email]})
    # Users made on the site are not sent as people here, so the stranger stays unknown to Customer.io.
    site_settings = WebhookSettings.load()
    site_settings.push_profiles = False
    site_settings.save()
    linked = make_users([1])[0]
    by_email = User.objects.create_user(username="mail", email="Mail@example.com")
    stranger = User.objects.create_user(username="stranger", email="stranger@example.com")
    for user in (linked, by_email, stranger):
        apply_tags(user, course)
    cio_emulator.clear_requests()

    run_worker_until_idle(worker_env)

    calls = segment_calls(cio_emulator)
    assert sorted((call["query"]["id_type"], tuple(call["body"]["ids"])) for call in calls) == [
        ("cio_id", ("cio00001",)),
        ("email", ("Mail@example.com",)),
    ]
    assert cio_emulator.customer("stranger@example.com") is None  # add_customers would have created them
    assert User.objects.get(pk=by_email.pk).cio_id == "cio-mail"  # learnt for next time
    notice = ActivityLog.objects.get(user=stranger)
    assert "not a person in Customer.io" in notice.message
    assert stranger.has_tag("Course done")  # the site keeps the tag


def test_changes_waiting_together_go_out_together_and_the_latest_wins(cio_emulator, worker_env, course):
    cio_emulator.reset({"segments": [COURSE], "customers": [person(n) for n in range(4)]})
    users = make_users(range(4))
    for user in users:
        apply_tags(user, course)
    remove_tags(users[0], course)  # applied then removed before the worker ran: only the removal goes
    cio_emulator.clear_requests()

    run_worker_until_idle(worker_env)

    assert [call["body"]["ids"] for call in segment_calls(cio_emulator, "add_customers")] == [
        ["cio00001", "cio00002", "cio00003"]
    ]
    assert [call["body"]["ids"] for call in segment_calls(cio_emulator, "remove_customers")] == [["cio00000"]]
    assert members(cio_emulator) == {"cio00001", "cio00002", "cio00003"}


def test_customer_io_failures_are_retried_until_everything_is_sent(cio_emulator, worker_env, course):
    cio_emulator.reset({"segments": [COURSE], "customers": [person(n) for n in range(USERS)]})
    users = make_users(range(USERS))
    apply_to_everyone(users, course)
    # Seeded, so the first segment call always fails (random.Random(1) draws 0.134 first): the test cannot pass
    # without a real failure to retry.
    cio_emulator.set_faults(fail_rate=0.5, fail_status=500, path_prefix="/api/v1/segments/", seed=1)
    worker = start_worker(worker_env)
    try:
        wait_for(lambda: len(members(cio_emulator)) == USERS, what="every user in the segment")
        wait_for(lambda: not SegmentChange.objects.filter(sent_at__isnull=True).exists(), what="the outbox sent")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    statuses = [call["status"] for call in segment_calls(cio_emulator)]
    assert 500 in statuses  # faults really happened
    assert statuses.count(200) >= 3


def test_a_killed_worker_loses_nothing(cio_emulator, worker_env, course):
    cio_emulator.reset({"segments": [COURSE], "customers": [person(n) for n in range(USERS)]})
    users = make_users(range(USERS))
    apply_to_everyone(users, course)
    cio_emulator.set_faults(latency_ms=4000, path_prefix="/api/v1/segments/")  # the worker is mid-call when killed
    first = start_worker({**worker_env, "WEBHOOK_LEASE_SECONDS": "3"})
    try:
        wait_for(lambda: SegmentChange.objects.filter(claimed_until__isnull=False).exists(), what="a claim")
        time.sleep(0.5)
    finally:
        first.kill()
        first.wait(10)
    assert SegmentChange.objects.filter(sent_at__isnull=True).count() == USERS
    cio_emulator.set_faults()
    second = start_worker(worker_env)
    try:
        wait_for(lambda: not SegmentChange.objects.filter(sent_at__isnull=True).exists(), what="the outbox sent")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert len(members(cio_emulator)) == USERS
