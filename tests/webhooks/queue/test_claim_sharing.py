"""A broadcast of queued updates is shared out: one claim takes at most WEBHOOK_PLAN_ONE_BY_ONE_LIMIT contacts with
an update or add (processed one at a time), and leaves the rest waiting, with their tasks, for any worker."""

import pytest
from django_tasks_db.models import DBTaskResult

from users.models import ActivityLog, User
from webhooks.models import WebhookDelivery
from webhooks.queue import drain

from .broadcasts import SEGMENTS, calls, make_users, people, process_all, tag_names
from .workers import queued, start_worker, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def sharing_settings(planning_settings, settings):
    settings.WEBHOOK_PLAN_ONE_BY_ONE_LIMIT = 10


def named_people(count):
    """People with a first name each: an update of theirs has an attribute to write."""
    return [{**person, "attributes": {"first_name": person["id"].upper()}} for person in people(count)]


def statuses(ids):
    return list(WebhookDelivery.objects.filter(pk__in=ids).order_by("pk").values_list("status", flat=True))


def test_one_claim_takes_at_most_the_limit_of_updates_and_leaves_the_rest_to_any_worker(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": named_people(30)})
    make_users(30)
    ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(30)]

    drain.process(ids[0])
    # The ten oldest (the claimed one among them); the other twenty still wait, each with a task ready to run.
    assert statuses(ids) == ["succeeded"] * 10 + ["queued"] * 20
    task_ids = WebhookDelivery.objects.filter(pk__in=ids[10:]).values_list("task_id", flat=True)
    assert DBTaskResult.objects.filter(pk__in=list(task_ids), status="READY").count() == 20

    process_all()
    assert statuses(ids) == ["succeeded"] * 30
    assert User.objects.get(email="p29@example.com").first_name == "P29"
    assert tag_names("p28@example.com") == ["Newsletter"]
    # One activity line per delivery for the tags, none twice.
    assert ActivityLog.objects.filter(message__startswith="Loaded tags").count() == 30
    # Three claims of ten contacts: a scan round each, attributes 100 a call.
    assert calls(cio_emulator)["attributes_batch"] == 3 and calls(cio_emulator)["list"] == 3


def test_update_tags_are_all_taken_at_once_beside_the_limited_updates(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(40)})
    make_users(40)
    tag_ids = [queued(client, "update_tags", email=f"p{n}@example.com")["delivery_id"] for n in range(25)]
    update_ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(25, 40)]

    drain.process(tag_ids[0])
    assert statuses(tag_ids) == ["succeeded"] * 25  # written in bulk: no limit
    assert statuses(update_ids) == ["succeeded"] * 10 + ["queued"] * 5


def test_a_contact_whose_update_is_past_the_limit_is_left_whole(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": people(12)})
    make_users(12)
    first_tags = queued(client, "update_tags", email="p11@example.com")["delivery_id"]
    update_ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(10)]
    later_update = queued(client, "update", email="p11@example.com")["delivery_id"]

    drain.process(update_ids[0])
    assert statuses(update_ids) == ["succeeded"] * 10
    # p11's update_tags came first, but p11 also has an update past the limit: both wait, to be processed together.
    assert statuses([first_tags, later_update]) == ["queued", "queued"]
    process_all()
    assert statuses([first_tags, later_update]) == ["succeeded", "succeeded"]
    assert WebhookDelivery.objects.get(pk=first_tags).result["action"] == "update"


@pytest.mark.concurrency
def test_two_workers_share_a_broadcast_of_updates(client, emulator_env, cio_emulator):
    env = {**emulator_env, "WEBHOOK_PLAN_SETTLE_SECONDS": "0", "WEBHOOK_PLAN_ONE_BY_ONE_LIMIT": "5"}
    cio_emulator.reset({"segments": SEGMENTS, "customers": named_people(60)})
    make_users(60)
    ids = [queued(client, "update", email=f"p{n}@example.com")["delivery_id"] for n in range(60)]
    workers = [start_worker(env) for _ in range(2)]
    try:
        wait_for(lambda: statuses(ids) == ["succeeded"] * 60, 120, "the queue to drain")
    finally:
        for worker in workers:
            stop(worker)
    assert {n: User.objects.get(email=f"p{n}@example.com").first_name for n in range(60)} == {
        n: f"P{n}" for n in range(60)
    }
    per_delivery = ActivityLog.objects.filter(message__startswith="Loaded tags").values_list("delivery_id", flat=True)
    assert sorted(per_delivery) == sorted(ids)  # one each: nothing processed twice
    # Each claim ran as a task of its own: at least one per five contacts.
    ran = DBTaskResult.objects.filter(status="SUCCESSFUL", started_at__isnull=False)
    assert ran.count() >= 12
