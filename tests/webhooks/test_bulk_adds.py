"""Queued `add`s of a scanned batch of new people with Return Password on, created in bulk: each person one user,
with the password Customer.io got back (returned once, in /api/v2/batch calls), their tags and activity lines and
their delivery's own result, as one by one; a refused return is retried and settled as one by one."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from users.models import ActivityLog, User
from webhooks import queue
from webhooks.models import WebhookDelivery

from .conftest import set_settings
from .test_planning import SEGMENTS, calls, people, process_all, tag_names
from .test_queue import queued

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FIELD = "site_password"


@pytest.fixture(autouse=True)
def planning_settings(settings):
    cache.clear()  # segment sizes are reused for a minute: not from one test to the next
    settings.WEBHOOK_PLAN_SETTLE_SECONDS = 0
    yield
    cache.clear()


def new_people(count):
    found = people(count)
    for n, person in enumerate(found):
        person["cio_id"] = f"c{n}"
        person["attributes"] = {"first_name": f"First{n}"}
    return found


def returned_passwords(emulator) -> list[tuple[str, str]]:
    """(person, password) of every password return Customer.io accepted, one by one or in batches."""
    found = []
    for entry in emulator.requests("/api/"):
        if entry["status"] != 200:
            continue
        if entry["path"] == "/api/v2/batch":
            for operation in entry["body"]["batch"]:
                person = operation["identifiers"].get("cio_id") or operation["identifiers"].get("email")
                found.append((person, operation["attributes"][FIELD]))
        elif entry["path"].startswith("/api/v1/customers/"):
            found.append((entry["path"].removeprefix("/api/v1/customers/cio_"), entry["body"][FIELD]))
    return found


def lines(delivery_id, prefix):
    return ActivityLog.objects.filter(delivery_id=delivery_id, message__startswith=prefix).count()


def test_a_burst_of_new_people_each_get_one_user_and_the_password_returned_to_them(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": new_people(60)})
    set_settings(return_password=True, return_password_field=FIELD)
    ids = [queued(client, "add", email=f"p{n}@example.com")["delivery_id"] for n in range(60)]

    process_all()

    assert User.objects.count() == 60
    returns = returned_passwords(cio_emulator)
    # One accepted return each, made in batch calls (50 people a call), none one by one.
    assert sorted(person for person, _ in returns) == sorted(f"c{n}" for n in range(60))
    assert len(cio_emulator.requests("/api/v2/batch")) == 2
    assert not cio_emulator.requests("/api/v1/customers/")
    rows = {row.pk: row for row in WebhookDelivery.objects.filter(pk__in=ids)}
    for n in (0, 49, 50, 59):
        user = User.objects.get(email=f"p{n}@example.com")
        # The password Customer.io holds is the one that logs them in; nothing is owed any more.
        assert user.check_password(cio_emulator.customer(f"p{n}@example.com")["attributes"][FIELD])
        assert not user.password_return_due and user.password_return_claimed_until is None
        assert (user.first_name, user.cio_id) == (f"First{n}", f"c{n}")
        row = rows[ids[n]]
        assert row.status == "succeeded" and row.user_id == user.pk
        assert row.result == {
            "status": "ok",
            "action": "add",
            "user_id": user.pk,
            "created": True,
            "tags": [SEGMENTS[n % 3]["name"]],
            "updated_fields": ["email", "first_name"],
        }
        assert tag_names(f"p{n}@example.com") == [SEGMENTS[n % 3]["name"]]
    # Each delivery the lines one by one writes, once each.
    for delivery_id in ids:
        for prefix in ("Created user", "Loaded meta data", "Loaded tags", "Returned generated password"):
            assert lines(delivery_id, prefix) == 1, (delivery_id, prefix)
    # Read by scans: one segment list and a page per segment for the lot, attributes 100 a call.
    assert calls(cio_emulator)["per_contact"] == 0 and calls(cio_emulator)["attributes_batch"] == 1


def test_a_refused_return_is_retried_and_settled_with_a_fresh_password(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": new_people(20)})
    set_settings(return_password=True, return_password_field=FIELD)
    cio_emulator.set_faults(reject_identifiers=["c4"])
    ids = [queued(client, "add", email=f"p{n}@example.com")["delivery_id"] for n in range(20)]

    process_all()

    refused = WebhookDelivery.objects.get(pk=ids[4])
    assert refused.status == "retrying" and refused.result["error"] == "upstream_error"
    assert WebhookDelivery.objects.filter(pk__in=ids, status="succeeded").count() == 19
    user = User.objects.get(email="p4@example.com")
    assert user.password_return_due and user.password_return_claimed_until is None  # owed, and anyone may settle it
    assert lines(ids[4], "Could not return the generated password") == 1

    cio_emulator.set_faults()
    WebhookDelivery.objects.filter(pk=ids[4]).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    queue.process(ids[4])

    refused.refresh_from_db()
    user.refresh_from_db()
    assert refused.status == "succeeded" and not user.password_return_due
    assert User.objects.filter(email="p4@example.com").count() == 1
    # The one accepted return for p4 is the retry's, and it is the password that logs them in.
    [(_, password)] = [(person, password) for person, password in returned_passwords(cio_emulator) if person == "c4"]
    assert user.check_password(password)


def test_a_person_who_became_a_user_meanwhile_is_updated_not_duplicated(client, cio_emulator, monkeypatch):
    cio_emulator.reset({"segments": SEGMENTS, "customers": new_people(20)})
    set_settings(return_password=True, return_password_field=FIELD)
    ids = [queued(client, "add", email=f"p{n}@example.com")["delivery_id"] for n in range(20)]
    # After the plan looked (nobody for p7), before the bulk creation: p7 is created by someone else.
    real_plan = queue.planning.plan_reads

    def plan_then_create(works):
        plan = real_plan(works)
        User.objects.create(username="p7-elsewhere", email="P7@example.com")
        return plan

    monkeypatch.setattr(queue.planning, "plan_reads", plan_then_create)
    process_all()

    assert User.objects.filter(email_normalized="p7@example.com").count() == 1
    row = WebhookDelivery.objects.get(pk=ids[7])
    assert row.status == "succeeded" and row.result["created"] is False
    assert WebhookDelivery.objects.filter(pk__in=ids, status="succeeded").count() == 20
    assert User.objects.count() == 20
    # The others were still created together: their returns went in one batch call.
    [batch] = cio_emulator.requests("/api/v2/batch")
    assert len(batch["body"]["batch"]) == 19
