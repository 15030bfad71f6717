"""Queued `update`s of a scanned batch written in bulk: each user's mapped fields, tags and activity lines and each
delivery's own result as one by one; anything unusual (a staff account, an email owed) still one by one."""

import threading

import pytest

from users.models import ActivityLog, User
from users.signals import tags_modified
from webhooks.models import WebhookDelivery
from webhooks.queue import drain

from .broadcasts import SEGMENTS, calls, make_users, people, process_all, tag_names
from .workers import queued, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("planning_settings")]


def customers(count, overrides=None):
    found = people(count)
    for n, person in enumerate(found):
        person["cio_id"] = f"c{n}"
        person["attributes"] = {"first_name": f"First{n}", "last_name": "Broadcast", **(overrides or {}).get(n, {})}
    return found


def lines(delivery_id, prefix):
    return ActivityLog.objects.filter(delivery_id=delivery_id, message__startswith=prefix).count()


def test_a_broadcast_of_updates_is_written_as_one_by_one_would(client, cio_emulator, caplog):
    caplog.set_level("INFO", logger="webhooks.queue.bulk_updates")
    cio_emulator.reset({"segments": SEGMENTS, "customers": customers(30)})
    make_users(30)
    User.objects.filter(email="p3@example.com").update(is_staff=True, first_name="Staff")
    ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(30)]
    process_all()

    rows = {row.pk: row for row in WebhookDelivery.objects.filter(pk__in=ids)}
    assert rows[ids[3]].status == "skipped" and rows[ids[3]].result["reason"] == "protected_account"
    assert User.objects.get(email="p3@example.com").first_name == "Staff"  # a staff account is never touched
    for n in (0, 7, 29):
        user = User.objects.get(email=f"p{n}@example.com")
        assert (user.first_name, user.last_name, user.cio_id) == (f"First{n}", "Broadcast", f"c{n}")
        result = rows[ids[n]].result
        assert rows[ids[n]].status == "succeeded" and rows[ids[n]].user_id == user.pk
        assert result["action"] == "update" and result["updated_fields"] == ["first_name", "last_name"]
        assert result["tags"] == [SEGMENTS[n % 3]["name"]] == tag_names(f"p{n}@example.com")
    # Each delivery its own activity lines, once each.
    for n in range(30):
        if n != 3:
            assert (lines(ids[n], "Loaded meta data"), lines(ids[n], "Loaded tags")) == (1, 1)
    line = ActivityLog.objects.get(delivery_id=ids[7], message__startswith="Loaded meta data")
    assert line.user.email == "p7@example.com" and "first_name: First7" in line.message
    assert "Updated 29 users in bulk (1 others one by one)" in caplog.messages
    # One scan and one attributes call for the batch, no call per contact.
    assert calls(cio_emulator) == {"list": 1, "count": 3, "membership": 3, "attributes_batch": 1}


def test_the_same_updates_again_change_nothing(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": customers(30)})
    make_users(30)
    for n in range(30):
        queued(client, "update", email=f"p{n}@example.com")
    process_all()
    modified = []
    receiver = lambda sender, user, tags, **kwargs: modified.append(user.email)  # noqa: E731
    tags_modified.connect(receiver, weak=False)
    try:
        ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(30)]
        process_all()
    finally:
        tags_modified.disconnect(receiver)
    results = WebhookDelivery.objects.filter(pk__in=ids).values_list("status", "result")
    assert {(status, tuple(result["updated_fields"])) for status, result in results} == {("succeeded", ())}
    assert modified == []


def test_a_user_owed_a_welcome_email_is_updated_one_by_one_and_gets_it(client, cio_emulator, mailoutbox, caplog):
    caplog.set_level("INFO", logger="webhooks.queue.bulk_updates")
    cio_emulator.reset({"segments": SEGMENTS, "customers": customers(30)})
    make_users(30)
    User.objects.filter(email="p8@example.com").update(welcome_email_due=True)
    ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(30)]
    process_all()
    assert set(WebhookDelivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"}
    assert User.objects.get(email="p8@example.com").welcome_email_due is False
    assert [message.to for message in mailoutbox] == [["p8@example.com"]]
    assert "Updated 29 users in bulk (1 others one by one)" in caplog.messages


@pytest.mark.concurrency
def test_a_bulk_update_does_not_undo_a_contact_processed_meanwhile(client, hook, cio_emulator, caplog):
    caplog.set_level("INFO", logger="webhooks.queue.bulk_updates")
    everyone_vip = [{**person, "segments": [1]} for person in customers(10)]
    cio_emulator.reset({"segments": SEGMENTS, "customers": everyone_vip})
    make_users(10)
    first = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(10)]
    # The emulator answers segment 1's page as it is when asked, then waits: the page still has p0 in VIP.
    cio_emulator.set_faults(latency_ms=1500, path_prefix="/v1/segments/1/membership")
    worker = threading.Thread(target=drain.process, args=(first[0],))
    worker.start()
    try:
        wait_for(lambda: cio_emulator.requests("/v1/segments/1/membership"), 30, "the scan")
        cio_emulator.add_customer(email="p0@example.com", segments=[2], attributes={"first_name": "Renamed"})
        answer = hook("update", email="p0@example.com")  # processed now, synchronously
        assert answer.status_code == 200 and answer.json()["tags"] == ["Newsletter"]
    finally:
        worker.join(timeout=60)
    cio_emulator.set_faults()
    assert set(WebhookDelivery.objects.filter(pk__in=first).values_list("status", flat=True)) == {"succeeded"}
    p0 = User.objects.get(email="p0@example.com")
    assert (p0.first_name, tag_names("p0@example.com")) == ("Renamed", ["Newsletter"])  # not undone
    assert User.objects.get(email="p4@example.com").first_name == "First4" and tag_names("p4@example.com") == ["VIP"]
    assert "Updated 9 users in bulk (1 others one by one)" in caplog.messages
