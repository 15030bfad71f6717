"""The site tells Customer.io what happens on it (users.services.outbox): counted from the emulator's request log.

Each trigger sends exactly what is mapped to push and nothing secret; a change Customer.io caused is never sent back;
50 changes of one person make one entry; an entry too large is dropped with a log line; a failed request is retried.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from settings_app import freshness
from settings_app.models import FieldMapping, WebhookSettings, cached_field_mappings
from users.models import ActivityLog, OutboxEntry, Role, User
from users.services import outbox, outbox_sender
from users.tracking import track

pytestmark = pytest.mark.django_db

PASSWORD = "Correct-horse-battery-9"  # noqa: S105 (a test password; it must never reach Customer.io)


def batches(emulator) -> list[list[dict]]:
    return [request["body"]["batch"] for request in emulator.requests("/api/v2/batch")]


def entries(emulator) -> list[dict]:
    return [entry for batch in batches(emulator) for entry in batch]


def identify_of(emulator, email) -> list[dict]:
    return [
        entry
        for entry in entries(emulator)
        if entry["action"] == "identify" and entry["attributes"].get("email") == email
    ]


def push(*pairs):
    """Field mappings that push: (Customer.io attribute, user field)."""
    for attribute, field_name in pairs:
        FieldMapping.objects.update_or_create(
            cio_attribute=attribute, user_field=field_name, defaults={"direction": "push", "active": True}
        )
    freshness.changed("field_mappings")


def configure(**values):
    site_settings = WebhookSettings.load()
    for name, value in values.items():
        setattr(site_settings, name, value)
    site_settings.save()


def send():
    return outbox_sender.send_due()


def test_a_user_created_on_the_site_is_sent_with_what_is_mapped_and_nothing_secret(cio_emulator):
    ann = User.objects.create_user(username="ann", email="ann@example.com", password=PASSWORD, first_name="Ann")
    assert OutboxEntry.objects.filter(user=ann).count() == 1

    summary = send()

    assert summary.requests == 1
    [entry] = entries(cio_emulator)
    assert entry["identifiers"] == {"email": "ann@example.com"}
    # The seeded push mappings (created_at from date_joined, last_login) and the email; first_name is pull-only.
    assert entry["attributes"] == {"email": "ann@example.com", "created_at": int(ann.date_joined.timestamp())}
    body = str(cio_emulator.requests("/api/v2/batch"))
    assert PASSWORD not in body and ann.password not in body
    assert cio_emulator.customer("ann@example.com")["attributes"]["created_at"] == int(ann.date_joined.timestamp())
    assert not OutboxEntry.objects.exists()
    ann.refresh_from_db()
    assert ann.cio_pushed_at is not None


def test_a_mapped_field_change_is_sent_an_unmapped_one_is_not(cio_emulator):
    push(("first_name", "first_name"), ("plan", "meta.plan"))
    ann = User.objects.create_user(username="ann", email="ann@example.com", cio_id="c-ann")
    send()
    cio_emulator.clear_requests()

    ann.last_name = "Pull-only"  # mapped, but only from Customer.io
    ann.save()
    assert not OutboxEntry.objects.exists()

    ann.first_name = "Ann"
    ann.meta = {"plan": "gold"}
    ann.save()
    send()

    [entry] = entries(cio_emulator)
    assert entry["identifiers"] == {"cio_id": "c-ann"}
    assert entry["attributes"]["first_name"] == "Ann" and entry["attributes"]["plan"] == "gold"
    assert "last_name" not in entry["attributes"]


def test_an_email_change_is_sent_by_cio_id(cio_emulator):
    cio_emulator.reset({"customers": [{"email": "old@example.com", "cio_id": "c-old"}]})
    user = User.objects.create_user(username="u", email="old@example.com", cio_id="c-old")
    send()
    user.email = "new@example.com"
    user.save()
    send()

    assert cio_emulator.customer("cio_c-old")["email"] == "new@example.com"
    assert cio_emulator.customer("old@example.com") is None


def test_an_email_change_without_a_cio_id_finds_the_person_by_the_old_address(cio_emulator):
    cio_emulator.reset({"customers": [{"email": "old@example.com", "cio_id": "c-old"}]})
    configure(push_profiles=False)
    user = User.objects.create_user(username="u", email="old@example.com")
    configure(push_profiles=True)
    user.email = "new@example.com"
    user.save()
    assert OutboxEntry.objects.get().previous_email == "old@example.com"

    send()

    [entry] = entries(cio_emulator)
    assert entry["identifiers"] == {"cio_id": "c-old"}  # never a second person made for the new address
    assert cio_emulator.customer("cio_c-old")["email"] == "new@example.com"
    user.refresh_from_db()
    assert user.cio_id == "c-old"


def test_a_role_change_and_a_login_are_sent(cio_emulator, client):
    push(("role", "role"))
    Role.objects.create(name="Customer", slug="customer")
    user = User.objects.create_user(username="u", email="u@example.com", password=PASSWORD)
    send()
    cio_emulator.clear_requests()

    user.role = Role.objects.get(slug="customer")
    user.save()
    send()
    [entry] = entries(cio_emulator)
    assert entry["attributes"]["role"] == "customer"

    cio_emulator.clear_requests()
    client.force_login(user)
    send()
    [entry] = entries(cio_emulator)
    user.refresh_from_db()
    assert entry["attributes"]["last_login"] == int(user.last_login.timestamp())


def test_a_password_change_tells_customerio_nothing(cio_emulator):
    user = User.objects.create_user(username="u", email="u@example.com")
    send()
    user.set_password(PASSWORD)
    user.save()
    assert not OutboxEntry.objects.exists()


def test_staff_are_not_sent_unless_the_settings_say_so(cio_emulator):
    User.objects.create_user(username="boss", email="boss@example.com", is_staff=True)
    User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)
    assert not OutboxEntry.objects.exists()

    configure(push_staff=True)
    User.objects.create_user(username="boss2", email="boss2@example.com", is_staff=True)
    assert OutboxEntry.objects.count() == 1


def test_nothing_is_recorded_when_sending_is_off_or_without_track_api_credentials(cio_emulator, settings):
    configure(push_profiles=False)
    User.objects.create_user(username="a", email="a@example.com")
    configure(push_profiles=True)
    settings.CUSTOMERIO_TRACK_API_KEY = ""
    User.objects.create_user(username="b", email="b@example.com")
    assert not OutboxEntry.objects.exists()


def test_fifty_changes_of_one_person_make_one_entry_with_the_latest_values(cio_emulator):
    push(("first_name", "first_name"))
    user = User.objects.create_user(username="u", email="u@example.com", cio_id="c-u")
    for n in range(50):
        user.first_name = f"Name {n}"
        user.save(update_fields=["first_name"])

    send()

    [batch] = batches(cio_emulator)
    assert len(batch) == 1
    assert batch[0]["attributes"]["first_name"] == "Name 49"
    assert not OutboxEntry.objects.exists()


def test_a_change_adds_one_insert_to_its_request(
    cio_emulator, django_assert_num_queries, django_capture_on_commit_callbacks
):
    push(("first_name", "first_name"))
    user = User.objects.create_user(username="u", email="u@example.com")
    user = User.objects.get(pk=user.pk)
    user.first_name = "Ann"
    # The configuration is read at most once a second per process, and a web process looks for the worker's task
    # at most twice a second: both done just now, as in a burst.
    WebhookSettings.cached()
    cached_field_mappings()
    outbox.wake_worker_soon()
    # The UPDATE, and the outbox's one INSERT (no read, no Customer.io call), the commit's callbacks included.
    with django_assert_num_queries(2), django_capture_on_commit_callbacks(execute=True):
        user.save(update_fields=["first_name"])


def test_an_entry_too_large_is_dropped_with_a_log_line_not_retried(cio_emulator, caplog):
    push(("bio", "meta.bio"))
    user = User.objects.create_user(username="u", email="u@example.com", meta={"bio": "x" * 40_000})
    User.objects.create_user(username="v", email="v@example.com")

    with caplog.at_level(logging.WARNING, logger="users.services.outbox_sender"):
        summary = send()

    assert summary.dropped == 1 and summary.sent == 1
    assert [entry["identifiers"] for entry in entries(cio_emulator)] == [{"email": "v@example.com"}]
    assert any("refused the profile of user" in line and "32 KB" in line for line in caplog.messages)
    assert not OutboxEntry.objects.exists()  # not retried forever
    assert ActivityLog.objects.filter(user=user, message__contains="Not sent to Customer.io").exists()


def test_failed_requests_are_retried_and_nothing_is_lost(cio_emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    cio_emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/v2/batch")
    for n in range(3):
        User.objects.create_user(username=f"u{n}", email=f"u{n}@example.com")

    summary = send()
    assert summary.failed == 3 and summary.sent == 0
    assert OutboxEntry.objects.filter(attempts=1).count() == 3

    cio_emulator.set_faults()
    cio_emulator.clear_requests()
    OutboxEntry.objects.update(next_attempt_at=timezone.now())  # the retry's time has come
    summary = send()

    assert summary.sent == 3
    assert sorted(entry["identifiers"]["email"] for entry in entries(cio_emulator)) == [
        "u0@example.com",
        "u1@example.com",
        "u2@example.com",
    ]
    assert not OutboxEntry.objects.exists()


def test_rows_held_by_a_worker_that_died_are_taken_over_after_the_lease(cio_emulator):
    User.objects.create_user(username="u", email="u@example.com")
    OutboxEntry.objects.update(claimed_until=timezone.now() + timedelta(seconds=60))
    assert send().sent == 0  # a live worker holds it

    OutboxEntry.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert send().sent == 1


def test_the_user_page_shows_the_last_push_and_what_is_owed(cio_emulator, admin_client, settings):
    user = User.objects.create_user(username="u", email="u@example.com")
    track(user, "course_completed")
    page = admin_client.get(f"/admin/users/user/{user.pk}/change/").content.decode()
    assert "profile, event course_completed" in page

    settings.CUSTOMERIO_MAX_RETRIES = 0
    cio_emulator.set_faults(fail_rate=1.0, fail_status=503, path_prefix="/api/v2/batch")
    send()
    page = admin_client.get(f"/admin/users/user/{user.pk}/change/").content.decode()
    assert "tried 1 times" in page and "503" in page

    cio_emulator.set_faults()
    OutboxEntry.objects.update(next_attempt_at=timezone.now())
    send()
    user.refresh_from_db()
    page = admin_client.get(f"/admin/users/user/{user.pk}/change/").content.decode()
    assert "waiting to be sent to customer.io" in page.lower() and "nothing" in page
    assert user.cio_pushed_at is not None


def test_a_login_never_puts_back_an_email_customerio_changed(cio_emulator, client):
    cio_emulator.reset({"customers": [{"email": "old@example.com", "cio_id": "c-1"}]})
    user = User.objects.create_user(username="u", email="old@example.com", cio_id="c-1")
    send()
    cio_emulator.load({"customers": [{"cio_id": "c-1", "email": "new@example.com"}]})  # changed in Customer.io

    client.force_login(user)
    send()

    [_, login] = entries(cio_emulator)
    assert "email" not in login["attributes"]
    assert cio_emulator.customer("cio_c-1")["email"] == "new@example.com"


def test_only_what_changed_is_sent_so_customerio_changes_are_never_put_back(cio_emulator, client):
    FieldMapping.objects.filter(user_field__in=["first_name", "email"]).update(direction="both")
    freshness.changed("field_mappings")
    cio_emulator.reset({"customers": [{"email": "ann@example.com", "cio_id": "c-1"}]})
    configure(push_profiles=False)
    user = User.objects.create_user(username="u", email="ann@example.com", cio_id="c-1", first_name="Ann")
    configure(push_profiles=True)
    # Changed in Customer.io since (the site hears of it at the next webhook).
    cio_emulator.load(
        {"customers": [{"cio_id": "c-1", "email": "ann.new@example.com", "attributes": {"first_name": "Annie"}}]}
    )

    client.force_login(user)
    send()

    [login] = entries(cio_emulator)
    assert login["attributes"] == {"last_login": int(User.objects.get().last_login.timestamp()), "_update": True}
    person = cio_emulator.customer("cio_c-1")
    assert (person["email"], person["attributes"]["first_name"]) == ("ann.new@example.com", "Annie")


def test_a_change_saved_later_is_still_sent(cio_emulator):
    push(("first_name", "first_name"))
    user = User.objects.create_user(username="u", email="u@example.com", cio_id="c-u")
    send()
    cio_emulator.clear_requests()
    user = User.objects.get(pk=user.pk)

    user.first_name = "Ann"
    user.save(update_fields=["last_login"])  # first_name changed on the instance, not saved yet
    user.save(update_fields=["first_name"])
    send()

    assert [entry["attributes"].get("first_name") for entry in entries(cio_emulator)] == ["Ann"]


def test_only_a_user_created_on_the_site_may_create_a_person(cio_emulator):
    push(("first_name", "first_name"))
    ann = User.objects.create_user(username="ann", email="ann@example.com")
    send()
    [created] = entries(cio_emulator)
    assert "_update" not in created["attributes"]  # a new person for Customer.io
    cio_emulator.clear_requests()

    ann.first_name = "Ann"
    ann.save()
    send()
    [changed] = entries(cio_emulator)
    assert changed["attributes"] == {"first_name": "Ann", "_update": True}  # never brings back a deleted person


def test_a_request_refused_as_a_whole_is_retried_not_dropped(cio_emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    cio_emulator.set_faults(fail_rate=1.0, fail_status=413, path_prefix="/api/v2/batch")
    User.objects.create_user(username="u", email="u@example.com")

    summary = send()

    assert summary.failed == 1 and summary.dropped == 0
    assert OutboxEntry.objects.get().attempts == 1


def test_a_new_address_is_deliverable_again(cio_emulator):
    from django.utils import timezone as tz

    user = User.objects.create_user(username="u", email="old@example.com")
    User.objects.filter(pk=user.pk).update(email_undeliverable=True, email_undeliverable_at=tz.now())
    user = User.objects.get(pk=user.pk)
    user.first_name = "Ann"
    user.save()
    assert User.objects.get(pk=user.pk).email_undeliverable  # the same address: still undeliverable

    user.email = "new@example.com"
    user.save()
    assert not User.objects.get(pk=user.pk).email_undeliverable
