"""Who a delivery is about when its body carries both `email` and `cio_id`: the user is found by cio_id first, so
an email changed in Customer.io follows the same user, and two Customer.io people whose emails differ only in
Unicode normalisation are never merged into one user."""

import unicodedata

import pytest

from users.models import ActivityLog, User

from .conftest import FIXTURE

pytestmark = pytest.mark.django_db

JOSE_NFC = unicodedata.normalize("NFC", "josé@example.com")
JOSE_NFD = unicodedata.normalize("NFD", "josé@example.com")


@pytest.fixture
def people(cio_emulator):
    customers = [
        {**FIXTURE["customers"][0], "cio_id": "cio-ann"},
        {**FIXTURE["customers"][1], "cio_id": "cio-bob"},
        {"email": JOSE_NFC, "cio_id": "cio-jose-nfc", "attributes": {"first_name": "José"}, "segments": [1]},
        {"email": JOSE_NFD, "cio_id": "cio-jose-nfd", "attributes": {"first_name": "Jose D"}, "segments": [2]},
    ]
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": customers})
    return cio_emulator


def both(email, cio_id):
    return {"email": email, "cio_id": cio_id}


def paths(emulator):
    return [entry["path"] for entry in emulator.requests("/v1/")]


def test_an_email_changed_in_customerio_follows_the_user_found_by_cio_id(hook, people):
    created = hook("add", body=both("ann@example.com", "cio-ann"))
    assert created.status_code == 200 and created.json()["created"], created.content
    user = User.objects.get()
    assert user.cio_id == "cio-ann"

    people.load({"customers": [{"cio_id": "cio-ann", "email": "ann.new@example.com"}]})
    people.clear_requests()
    updated = hook("update", body=both("ann.new@example.com", "cio-ann"))

    assert updated.status_code == 200, updated.content
    assert updated.json()["user_id"] == user.pk
    assert "email" in updated.json()["updated_fields"]
    assert User.objects.count() == 1
    user.refresh_from_db()
    assert user.email == "ann.new@example.com"
    # The same two calls an email-only update makes (at once: in either order): finding the user by cio_id cost no
    # lookup.
    assert sorted(paths(people)) == [
        "/v1/customers/ann.new@example.com/attributes",
        "/v1/customers/ann.new@example.com/segments",
    ]
    assert ActivityLog.objects.filter(
        message=f"Changed email of {user.username} from ann@example.com to ann.new@example.com (changed in Customer.io)"
    ).exists()


@pytest.mark.parametrize("action", ["update_tags", "update", "add"])
def test_a_late_delivery_with_the_old_email_does_not_set_it_back(hook, people, action):
    hook("add", body=both("ann@example.com", "cio-ann"))
    people.load({"customers": [{"cio_id": "cio-ann", "email": "ann.new@example.com"}]})
    assert hook("update", body=both("ann.new@example.com", "cio-ann")).status_code == 200

    late = hook(action, body=both("ann@example.com", "cio-ann"))  # sent before the change, retried after it

    # Customer.io no longer knows the old email: the delivery fails and its transaction changes nothing.
    assert late.status_code == 422 and late.json()["error"] == "contact_not_found", late.content
    assert User.objects.get().email == "ann.new@example.com"


def test_with_the_email_alone_the_changed_email_is_not_recognised(hook, people):
    """What the recommended body fixes: without cio_id the new email names nobody on the site."""
    hook("add", body=both("ann@example.com", "cio-ann"))
    people.load({"customers": [{"cio_id": "cio-ann", "email": "ann.new@example.com"}]})
    answer = hook("update", "ann.new@example.com")
    assert answer.json() == {"status": "skipped", "action": "update", "reason": "no_matching_user"}
    assert User.objects.get().email == "ann@example.com"


def test_update_tags_with_both_identifiers_makes_one_call(hook, people):
    hook("add", body=both("ann@example.com", "cio-ann"))
    people.load({"customers": [{"cio_id": "cio-ann", "email": "ann.new@example.com", "segments": [3]}]})
    people.clear_requests()
    answer = hook("update_tags", body=both("ann.new@example.com", "cio-ann"))
    assert answer.status_code == 200 and answer.json()["tags"] == ["Active customers"], answer.content
    assert paths(people) == ["/v1/customers/ann.new@example.com/segments"]
    assert User.objects.get().email == "ann.new@example.com"


def test_a_known_user_is_linked_to_the_cio_id_the_body_carries(hook, people):
    user = User.objects.create_user(username="ann", email="ann@example.com")
    answer = hook("update_tags", body=both("ann@example.com", "cio-ann"))
    assert answer.status_code == 200, answer.content
    user.refresh_from_db()
    assert user.cio_id == "cio-ann"


@pytest.mark.parametrize("body", [both(JOSE_NFD, "cio-jose-nfd"), {"email": JOSE_NFD}], ids=["both", "email-only"])
@pytest.mark.parametrize("action", ["add", "update"])
def test_people_whose_emails_differ_only_in_unicode_normalisation_are_not_merged(hook, people, body, action):
    first = hook("add", body=both(JOSE_NFC, "cio-jose-nfc"))
    assert first.status_code == 200 and first.json()["created"], first.content

    second = hook(action, body=body)

    assert second.status_code == 422, second.content
    assert second.json()["error"] == "identity_conflict"
    assert "cio-jose-nfc" in second.json()["detail"] and "cio-jose-nfd" in second.json()["detail"]
    user = User.objects.get()  # still one user, still the first person's
    assert (user.email, user.cio_id, user.first_name) == (JOSE_NFC, "cio-jose-nfc", "José")
    assert list(user.tags.values_list("name", flat=True)) == ["VIP"]


def test_an_email_change_to_another_users_address_fails_clearly(hook, people):
    hook("add", body=both("ann@example.com", "cio-ann"))
    hook("add", body=both("bob@example.com", "cio-bob"))
    people.load({"customers": [{"cio_id": "cio-bob", "email": "bob.old@example.com"}]})
    people.load({"customers": [{"cio_id": "cio-ann", "email": "bob@example.com"}]})

    answer = hook("update", body=both("bob@example.com", "cio-ann"))

    assert answer.status_code == 422, answer.content
    assert answer.json()["error"] == "identity_conflict"
    assert "bob@example.com" in answer.json()["detail"]
    assert sorted(User.objects.values_list("email", "cio_id")) == [
        ("ann@example.com", "cio-ann"),
        ("bob@example.com", "cio-bob"),
    ]


def test_a_cio_id_with_an_unknown_email_creates_the_user_with_that_id(hook, people):
    answer = hook("add", body=both("ann@example.com", "cio-ann"))
    assert answer.status_code == 200, answer.content
    assert User.objects.get().cio_id == "cio-ann"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_queued_delivery_keeps_both_identifiers(client, emulator_env, people):
    from webhooks.models import WebhookDelivery

    from .queue.workers import queued, run_worker_until_idle

    User.objects.create_user(username="ann", email="ann@example.com", cio_id="cio-ann")
    before = queued(client, "update", body=both("ann@example.com", "cio-ann"))
    people.load({"customers": [{"cio_id": "cio-ann", "email": "ann.new@example.com"}]})
    after = queued(client, "update", body=both("ann.new@example.com", "cio-ann"))
    # Grouped by the person's lasting identifier, so deliveries sent before and after an email change coalesce.
    assert set(WebhookDelivery.objects.values_list("contact_key", flat=True)) == {"cio_id:cio-ann"}

    run_worker_until_idle(emulator_env)

    for accepted in (before, after):
        delivery = WebhookDelivery.objects.get(pk=accepted["delivery_id"])
        assert delivery.status == "succeeded", delivery.error
    # Processed once, as the newest delivery names them: the older one does not put the old email back.
    assert User.objects.get().email == "ann.new@example.com"
    # The two reads are made at once: in either order.
    assert sorted(entry["path"] for entry in people.requests("/v1/")) == [
        "/v1/customers/ann.new@example.com/attributes",
        "/v1/customers/ann.new@example.com/segments",
    ]
