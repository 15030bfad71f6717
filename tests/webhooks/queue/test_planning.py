"""Queued batches: segments read one call per contact or by membership scans, whichever costs fewer calls, counted
from the emulator's log; update_tags written in bulk; a delivery that arrives during a scan is not served by it."""

import signal
import threading

import pytest
from django.core.cache import cache
from django.db.models import Count

from users.models import ActivityLog, User
from users.signals import tags_modified
from webhooks.models import WebhookDelivery
from webhooks.queue import drain

from .broadcasts import SEGMENTS, calls, make_users, people, process_all, tag_names
from .workers import queued, run_worker_until_idle, start_worker, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("planning_settings")]


def test_many_contacts_are_read_by_scans_and_written_in_bulk(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(30)})
    make_users(30)
    modified = []
    receiver = lambda sender, user, tags, **kwargs: modified.append(user.email)  # noqa: E731
    tags_modified.connect(receiver, weak=False)
    try:
        ids = [queued(client, "update_tags", email=f"p{n}@example.com")["delivery_id"] for n in range(30)]
        process_all()
        # Again, with nothing changed in Customer.io: no tag signal for anyone.
        modified_first = sorted(modified)
        modified.clear()
        for n in range(30):
            queued(client, "update_tags", email=f"p{n}@example.com")
        process_all()
    finally:
        tags_modified.disconnect(receiver)
    # Each round: the segment list, the three membership pages; the sizes once (reused for a minute).
    assert calls(cio_emulator) == {"list": 2, "count": 3, "membership": 6}
    assert modified_first == sorted(f"p{n}@example.com" for n in range(30)) and modified == []
    rows = {row.pk: row for row in WebhookDelivery.objects.filter(pk__in=ids)}
    assert {row.status for row in rows.values()} == {"succeeded"}
    assert rows[ids[4]].result["tags"] == ["Newsletter"] and rows[ids[4]].user.email == "p4@example.com"
    assert tag_names("p5@example.com") == ["Active customers"]
    # The activity line a one-by-one update_tags writes, naming each delivery.
    line = ActivityLog.objects.get(delivery_id=ids[3])
    assert line.message == "Loaded tags for p3@example.com: VIP" and line.user.email == "p3@example.com"


def test_one_person_named_two_ways_in_a_scanned_batch_keeps_their_tags(client, cio_emulator):
    # p4 is named by email alone in one delivery and by email and cio_id in another: two contacts, one user. The
    # scan serves both; neither may replace the other's segments with none.
    customers = people(30)
    customers[4]["cio_id"] = "cio-p4"
    cio_emulator.reset({"segments": SEGMENTS, "customers": customers})
    make_users(30)
    User.objects.filter(email="p4@example.com").update(cio_id="cio-p4")
    queued(client, "update_tags", body={"email": "p4@example.com", "cio_id": "cio-p4"})
    for n in range(30):
        queued(client, "update_tags", email=f"p{n}@example.com")
    process_all()
    assert "membership" in calls(cio_emulator)
    assert tag_names("p4@example.com") == ["Newsletter"]
    rows = WebhookDelivery.objects.filter(contact__iexact="p4@example.com")
    assert [row.result["tags"] for row in rows] == [["Newsletter"], ["Newsletter"]]
    assert {row.status for row in rows} == {"succeeded"}


def test_a_staff_account_made_so_after_planning_is_not_written_in_bulk(client, cio_emulator, monkeypatch):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(30)})
    make_users(30)
    for n in range(30):
        queued(client, "update_tags", email=f"p{n}@example.com")
    from webhooks.queue import planning

    real_scan = planning.scan

    def scan_then_promote(*args, **kwargs):
        found = real_scan(*args, **kwargs)
        User.objects.filter(email="p7@example.com").update(is_staff=True)  # during the scan
        return found

    monkeypatch.setattr(planning, "scan", scan_then_promote)
    process_all()
    assert tag_names("p7@example.com") == []
    row = WebhookDelivery.objects.get(contact="p7@example.com")
    assert row.result["reason"] == "protected_account"
    assert tag_names("p8@example.com") == ["Active customers"]


@pytest.mark.concurrency
def test_a_scan_does_not_undo_a_synchronous_read_made_after_it(client, cio_emulator, monkeypatch):
    # A synchronous update_tags received before the batch was planned, but reading Customer.io after the scan did:
    # its tags are newer than the scan's, and the bulk write leaves them alone.
    from django.utils import timezone

    from users.services.accounts import ActionRequest, update_tags
    from users.services.contacts import Contact
    from webhooks.queue import planning

    cio_emulator.reset({"segments": SEGMENTS, "customers": people(30)})
    make_users(30)
    received_before = timezone.now()
    for n in range(30):
        queued(client, "update_tags", email=f"p{n}@example.com")
    real_scan = planning.scan

    def scan_then_read_synchronously(*args, **kwargs):
        found = real_scan(*args, **kwargs)
        cio_emulator.load({"customers": [{"email": "p5@example.com", "id": "p5", "segments": [1]}]})
        update_tags(ActionRequest(Contact.email("p5@example.com"), received_at=received_before, strength=1))
        return found

    monkeypatch.setattr(planning, "scan", scan_then_read_synchronously)
    process_all()
    assert tag_names("p5@example.com") == ["VIP"]
    assert tag_names("p8@example.com") == ["Active customers"]


def test_a_few_contacts_in_big_segments_are_read_one_call_each(client, cio_emulator):
    # 60,001 people in one segment: a scan is 3 pages, dearer than three contacts' own calls.
    big = [{"email": f"m{n}@example.com", "segments": [1]} for n in range(60_001)]
    cio_emulator.reset({"segments": SEGMENTS[:1], "customers": people(3, lambda n: [1]) + big})
    make_users(3)
    for n in range(3):
        queued(client, "update_tags", email=f"p{n}@example.com")
    process_all()
    assert calls(cio_emulator) == {"list": 1, "count": 1, "per_contact": 3}
    assert tag_names("p2@example.com") == ["VIP"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}

    # The same three people with the segment small again (its size read anew after the minute): scanned.
    cache.clear()
    cio_emulator.reset({"segments": SEGMENTS[:1], "customers": people(3, lambda n: [1])})
    cio_emulator.clear_requests()
    for n in range(3):
        queued(client, "update_tags", email=f"p{n}@example.com")
    process_all()
    assert calls(cio_emulator) == {"list": 1, "count": 1, "membership": 1}


def test_update_and_add_use_the_scan_and_one_attributes_call_per_hundred(client, cio_emulator):
    customers = people(30)
    for person in customers:
        person["attributes"] = {"first_name": person["id"].upper()}
    cio_emulator.reset({"segments": SEGMENTS, "customers": customers})
    make_users(20)
    for n in range(30):
        queued(client, "update" if n < 20 else "add", email=f"p{n}@example.com")
    process_all()
    assert calls(cio_emulator) == {"list": 1, "count": 3, "membership": 3, "attributes_batch": 1}
    assert User.objects.count() == 30
    assert User.objects.get(email="p7@example.com").first_name == "P7"
    assert tag_names("p24@example.com") == ["VIP"]  # created, its tags from the scan
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_failed_scan_retries_the_whole_batch_later(client, cio_emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(10)})
    make_users(10)
    ids = [queued(client, "update_tags", email=f"p{n}@example.com")["delivery_id"] for n in range(10)]
    cio_emulator.set_faults(fail_rate=1.0, fail_status=503, path_prefix="/v1/segments/2/membership")
    process_all()
    rows = WebhookDelivery.objects.filter(pk__in=ids)
    assert {(row.status, row.http_status) for row in rows} == {("retrying", 502)}
    assert not User.objects.filter(tags__isnull=False).exists()  # nothing written from half a scan
    cio_emulator.set_faults()
    WebhookDelivery.objects.update(next_attempt_at=None)  # the backoff is over
    for delivery_id in ids:
        drain.process(delivery_id)
    assert set(rows.values_list("status", flat=True)) == {"succeeded"}
    assert tag_names("p1@example.com") == ["Newsletter"]


@pytest.mark.concurrency
def test_a_delivery_that_arrives_during_a_scan_is_not_served_by_it(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(10, lambda n: [1])})
    make_users(10)
    first = [queued(client, "update_tags", email=f"p{n}@example.com")["delivery_id"] for n in range(10)]
    cio_emulator.set_faults(latency_ms=1500, path_prefix="/v1/segments/1/membership")
    worker = threading.Thread(target=drain.process, args=(first[0],))
    worker.start()
    try:
        wait_for(lambda: cio_emulator.requests("/v1/segments/1/membership"), 30, "the scan")
        # Meanwhile p0 leaves VIP for Newsletter and Customer.io sends a new delivery.
        cio_emulator.add_customer(email="p0@example.com", segments=[2])
        late = queued(client, "update_tags", email="p0@example.com")["delivery_id"]
    finally:
        worker.join(timeout=60)
    cio_emulator.set_faults()
    assert set(WebhookDelivery.objects.filter(pk__in=first).values_list("status", flat=True)) == {"succeeded"}
    assert WebhookDelivery.objects.get(pk=late).status == "queued"  # waits for a read made after it came
    drain.process(late)
    delivery = WebhookDelivery.objects.get(pk=late)
    assert (delivery.status, delivery.result["tags"]) == ("succeeded", ["Newsletter"])
    assert tag_names("p0@example.com") == ["Newsletter"]


@pytest.mark.concurrency
def test_a_scan_does_not_undo_a_contact_processed_meanwhile(client, hook, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(10, lambda n: [1])})
    make_users(10)
    first = [queued(client, "update_tags", email=f"p{n}@example.com")["delivery_id"] for n in range(10)]
    # The emulator answers segment 1's page as it is when asked, then waits: the page still has p0 in VIP.
    cio_emulator.set_faults(latency_ms=1500, path_prefix="/v1/segments/1/membership")
    worker = threading.Thread(target=drain.process, args=(first[0],))
    worker.start()
    try:
        wait_for(lambda: cio_emulator.requests("/v1/segments/1/membership"), 30, "the scan")
        cio_emulator.add_customer(email="p0@example.com", segments=[2])
        answer = hook("update_tags", email="p0@example.com")  # processed now, synchronously
        assert answer.status_code == 200 and answer.json()["tags"] == ["Newsletter"]
    finally:
        worker.join(timeout=60)
    cio_emulator.set_faults()
    assert set(WebhookDelivery.objects.filter(pk__in=first).values_list("status", flat=True)) == {"succeeded"}
    assert tag_names("p0@example.com") == ["Newsletter"]  # not VIP again from the older page
    assert tag_names("p1@example.com") == ["VIP"]


@pytest.mark.concurrency
def test_a_worker_killed_mid_plan_leaves_its_batch_to_another(client, emulator_env, cio_emulator):
    env = {
        **emulator_env,
        "WEBHOOK_LEASE_SECONDS": "2",
        "WEBHOOK_SWEEP_SECONDS": "0.5",
        "WEBHOOK_PLAN_SETTLE_SECONDS": "0",
        "CUSTOMERIO_MAX_RETRIES": "0",
    }
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(12)})
    make_users(12)
    ids = [queued(client, "update_tags", email=f"p{n}@example.com")["delivery_id"] for n in range(12)]
    cio_emulator.set_faults(latency_ms=4000, path_prefix="/v1/segments/2/membership")
    doomed = start_worker(env)
    try:
        wait_for(lambda: cio_emulator.requests("/v1/segments/2/membership"), 30, "the scan")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        stop(doomed)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"processing"}
    assert not ActivityLog.objects.filter(message__startswith="Loaded tags").exists()
    cio_emulator.set_faults()
    rescuer = start_worker(env)
    try:
        wait_for(
            lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 12, 60, "another worker to finish"
        )
    finally:
        stop(rescuer)
    assert set(WebhookDelivery.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {2}
    # Nothing twice: one tags line per delivery, and the tags themselves.
    per_delivery = ActivityLog.objects.filter(message__startswith="Loaded tags").values("delivery_id")
    assert sorted(row["n"] for row in per_delivery.annotate(n=Count("pk"))) == [1] * 12
    assert tag_names("p4@example.com") == ["Newsletter"]


@pytest.mark.concurrency
def test_two_workers_while_deliveries_keep_arriving(client, emulator_env, cio_emulator):
    env = {**emulator_env, "WEBHOOK_PLAN_SETTLE_SECONDS": "0.3", "CUSTOMERIO_MAX_RETRIES": "0"}
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(60)})
    make_users(60)
    workers = [start_worker(env) for _ in range(2)]
    try:
        for round_number in range(3):
            for n in range(60):
                queued(client, "update_tags", email=f"p{n}@example.com")
            if round_number == 1:
                # Customer.io moves everyone while deliveries keep coming: the last ones must see it.
                for n in range(60):
                    cio_emulator.add_customer(email=f"p{n}@example.com", segments=[1 + (n + 1) % 3])
        wait_for(lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 180, 120, "the queue to drain")
    finally:
        for worker in workers:
            stop(worker)
    moved = {n: SEGMENTS[(n + 1) % 3]["name"] for n in range(60)}
    assert {n: tag_names(f"p{n}@example.com") for n in range(60)} == {n: [name] for n, name in moved.items()}
    # Fewer calls than one per contact and round.
    assert sum(calls(cio_emulator).values()) < 180


def test_run_worker_batch_mode_still_drains(client, emulator_env, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(20)})
    make_users(20)
    for n in range(20):
        queued(client, "update_tags", email=f"p{n}@example.com")
    run_worker_until_idle({**emulator_env, "WEBHOOK_PLAN_SETTLE_SECONDS": "0"})
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 20
    assert calls(cio_emulator)["per_contact"] == 0
