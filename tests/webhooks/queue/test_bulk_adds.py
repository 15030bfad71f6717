"""Queued `add`s of a scanned batch of new people with Return Password on, created in bulk: each person one user,
with the password Customer.io got back (returned once, in /api/v2/batch calls), their tags and activity lines and
their delivery's own result, as one by one; a refused return is retried and settled as one by one."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from users.models import ActivityLog, Role, User
from users.signals import tags_modified, user_imported
from webhooks.models import WebhookDelivery
from webhooks.queue import drain, planning

from ..conftest import set_settings
from .broadcasts import SEGMENTS, calls, people, process_all, tag_names
from .workers import queued

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("planning_settings")]

FIELD = "site_password"


def new_people(count, segments_of=lambda n: [1 + n % 3]):
    found = people(count, segments_of)
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
    # Each return carries the account it opens, as WP Fusion's: username, site user id, registration (Unix time).
    accounts = {user.cio_id: user for user in User.objects.all()}
    for entry in cio_emulator.requests("/api/v2/batch"):
        for operation in entry["body"]["batch"]:
            user, attributes = accounts[operation["identifiers"]["cio_id"]], operation["attributes"]
            assert set(attributes) == {FIELD, "user_login", "user_id", "user_registered", "_update"}
            assert (attributes["user_login"], attributes["user_id"]) == (user.username, user.pk)
            assert attributes["user_registered"] == int(user.date_joined.timestamp())
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
    drain.process(ids[4])

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
    real_plan = planning.plan_reads

    def plan_then_create(works):
        plan = real_plan(works)
        User.objects.create(username="p7-elsewhere", email="P7@example.com")
        return plan

    monkeypatch.setattr(planning, "plan_reads", plan_then_create)
    process_all()

    assert User.objects.filter(email_normalized="p7@example.com").count() == 1
    row = WebhookDelivery.objects.get(pk=ids[7])
    assert row.status == "succeeded" and row.result["created"] is False
    assert WebhookDelivery.objects.filter(pk__in=ids, status="succeeded").count() == 20
    assert User.objects.count() == 20
    # The others were still created together: their returns went in one batch call.
    [batch] = cio_emulator.requests("/api/v2/batch")
    assert len(batch["body"]["batch"]) == 19


@pytest.fixture
def signals():
    """The emails user_imported and tags_modified (with the tags named) were sent for, in order."""
    sent = {"imported": [], "modified": []}

    def imported(sender, user, delivery, **kwargs):
        sent["imported"].append(user.email)

    def modified(sender, user, tags, **kwargs):
        sent["modified"].append((user.email, sorted(tag.name for tag in tags)))

    user_imported.connect(imported, weak=False)
    tags_modified.connect(modified, weak=False)
    yield sent
    user_imported.disconnect(imported)
    tags_modified.disconnect(modified)


def created_line(user):
    [line] = ActivityLog.objects.filter(user=user, message__startswith="Created user")
    message = line.message.replace(f"({user.email})", "(EMAIL)").replace(f"user {user.username} ", "user USERNAME ")
    return message, line.context


def test_users_created_in_bulk_get_role_welcome_email_and_signals_as_one_by_one(client, cio_emulator, signals):
    # p5 is in no segment: one by one, a tag load signals tags_modified even when nothing changed.
    customers = new_people(20, segments_of=lambda n: [] if n == 5 else [1 + n % 3])
    solo = {"email": "solo@example.com", "id": "solo", "cio_id": "csolo", "segments": [], "attributes": {}}
    cio_emulator.reset({"segments": SEGMENTS, "customers": [*customers, solo]})
    set_settings(return_password=True, return_password_field=FIELD)
    Role.objects.create(
        slug="customer", name="Customer", webhook_assignable=True, group=Group.objects.create(name="Customers")
    )
    cio_emulator.set_faults(reject_identifiers=["c4"])
    add = {"role": "customer", "send_notification": "true"}
    ids = [queued(client, "add", email=f"p{n}@example.com", **add)["delivery_id"] for n in range(20)]

    process_all()

    # Created in bulk: every return in one batch call, none one by one.
    [batch] = cio_emulator.requests("/api/v2/batch")
    assert len(batch["body"]["batch"]) == 20 and not cio_emulator.requests("/api/v1/customers/")
    emails = [f"p{n}@example.com" for n in range(20)]
    users = {user.email: user for user in User.objects.filter(email__in=emails)}
    assert len(users) == 20
    for email, user in users.items():
        assert user.role.slug == "customer", email
        assert list(user.groups.values_list("name", flat=True)) == ["Customers"], email
    # One welcome email each once the password is final; none for p4, whose return was refused.
    assert sorted(message.to[0] for message in mail.outbox) == sorted(set(emails) - {"p4@example.com"})
    assert sorted(signals["imported"]) == sorted(emails)
    # tags_modified once each, p5 (in no segment) too.
    assert sorted(signals["modified"]) == sorted(
        (f"p{n}@example.com", [] if n == 5 else [SEGMENTS[n % 3]["name"]]) for n in range(20)
    )

    # The refused one's retry settles it and sends the welcome email then.
    cio_emulator.set_faults()
    WebhookDelivery.objects.filter(pk=ids[4]).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    drain.process(ids[4])
    assert WebhookDelivery.objects.get(pk=ids[4]).status == "succeeded"
    assert [message.to for message in mail.outbox].count(["p4@example.com"]) == 1 and len(mail.outbox) == 20
    assert sorted(signals["imported"]) == sorted(emails)  # not created again

    # The same add for one new person, processed one by one, gives the same.
    mail.outbox.clear()
    signals["imported"].clear()
    signals["modified"].clear()
    drain.process(queued(client, "add", email="solo@example.com", **add)["delivery_id"])
    assert len(cio_emulator.requests("/api/v2/batch")) == 1  # not in bulk
    one_by_one = User.objects.get(email="solo@example.com")
    assert list(one_by_one.groups.values_list("name", flat=True)) == ["Customers"]
    assert [message.to for message in mail.outbox] == [["solo@example.com"]]
    assert signals == {"imported": ["solo@example.com"], "modified": [("solo@example.com", [])]}
    assert created_line(one_by_one) == (
        "Created user USERNAME (EMAIL) with role Customer",
        {"created": True, "role": "customer"},
    )
    for user in users.values():
        assert created_line(user) == created_line(one_by_one), user.email


def test_two_contacts_of_one_new_person_in_a_chunk_leave_the_second_to_one_by_one(client, cio_emulator):
    cio_emulator.reset({"segments": SEGMENTS, "customers": new_people(20)})
    set_settings(return_password=True, return_password_field=FIELD)
    ids = [queued(client, "add", email=f"p{n}@example.com")["delivery_id"] for n in range(20)]
    # p3 again, by email and cio_id: another contact key, the same person.
    ids.append(queued(client, "add", body={"email": "p3@example.com", "cio_id": "c3"})["delivery_id"])

    process_all()

    assert User.objects.count() == 20 and User.objects.filter(email_normalized="p3@example.com").count() == 1
    rows = list(WebhookDelivery.objects.filter(pk__in=ids))
    assert all(row.status == "succeeded" for row in rows)
    p3 = User.objects.get(email="p3@example.com")
    assert sorted(row.result["created"] for row in rows if row.user_id == p3.pk) == [False, True]
    # The other nineteen and one of p3's contacts were still created together: one batch call, none one by one.
    [batch] = cio_emulator.requests("/api/v2/batch")
    assert len(batch["body"]["batch"]) == 20 and not cio_emulator.requests("/api/v1/customers/")
    [(_, password)] = [(person, password) for person, password in returned_passwords(cio_emulator) if person == "c3"]
    assert p3.check_password(password) and not p3.password_return_due


def test_message_events_waiting_for_people_created_in_bulk_are_linked_to_them(client, cio_emulator):
    """Reporting events that came before these people had users wait under their emails; the bulk creation (no
    post_save) links them once the batch commits, to be processed again with their user."""
    from webhooks.models import MessageEvent

    cio_emulator.reset({"segments": SEGMENTS, "customers": new_people(60)})
    set_settings(return_password=True, return_password_field=FIELD)
    waiting = MessageEvent.objects.create(
        event_id="evt-early",
        metric="delivered",
        occurred_at=timezone.now(),
        email="P7@Example.com",
        processed_at=timezone.now(),
        unlinked_key="email:p7@example.com",
    )
    for n in range(60):
        queued(client, "add", email=f"p{n}@example.com")

    process_all()

    waiting.refresh_from_db()
    assert waiting.user == User.objects.get(email="p7@example.com")
    assert (waiting.unlinked_key, waiting.processed_at) == (None, None)
