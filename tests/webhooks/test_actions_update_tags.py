"""The update_tags action, end to end against the emulator: a user's tags become their Customer.io segments in one
App API call (tags matched by segment id and named from Customer.io), the tag signals fire on commit with the
differences, and someone who never joined is skipped without a call."""

import pytest

from users.models import ActivityLog, Tag
from users.signals import tags_applied, tags_modified, tags_removed
from webhooks.models import WebhookDelivery

from .conftest import app_calls, make_user

pytestmark = pytest.mark.django_db


def test_update_tags_replaces_the_users_tags_with_one_call(hook, emulator):
    user = make_user()
    stale = Tag.objects.create(segment_id=99, name="Old")
    user.tags.add(stale)
    response = hook("update_tags")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "action": "update_tags",
        "user_id": user.pk,
        "created": False,
        "tags": ["Newsletter", "VIP"],
        "updated_fields": [],
    }
    assert sorted(user.tags.values_list("segment_id", flat=True)) == [1, 2]
    assert app_calls(emulator) == [("GET", "/v1/customers/ann@example.com/segments")]
    assert ActivityLog.objects.filter(message__startswith="Loaded tags for ann@example.com: Newsletter, VIP").exists()
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_update_tags_for_someone_who_never_joined(hook, emulator):
    response = hook("update_tags", email="stranger@example.com")
    assert response.status_code == 200
    assert response.json() == {"status": "skipped", "action": "update_tags", "reason": "no_matching_user"}
    assert ActivityLog.objects.get(level="notice").message.startswith("No matching user found for stranger@example.com")
    assert emulator.requests() == []
    assert WebhookDelivery.objects.get().status == "skipped"


def test_tags_are_matched_by_segment_id_and_named_from_customerio(hook, emulator):
    Tag.objects.create(segment_id=1, name="Renamed locally")
    make_user()
    hook("update_tags")
    assert Tag.objects.get(segment_id=1).name == "VIP"
    assert Tag.objects.count() == 2


def test_tag_signals_fire_on_commit_with_the_differences(hook, emulator, django_capture_on_commit_callbacks):
    user = make_user()
    events = []
    receivers = {
        "applied": lambda sender, user, tags, **kw: events.append(("applied", sorted(t.name for t in tags))),
        "removed": lambda sender, user, tags, **kw: events.append(("removed", sorted(t.name for t in tags))),
        "modified": lambda sender, user, tags, **kw: events.append(("modified", sorted(t.name for t in tags))),
    }
    tags_applied.connect(receivers["applied"])
    tags_removed.connect(receivers["removed"])
    tags_modified.connect(receivers["modified"])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            hook("update_tags")
        assert events == [("applied", ["Newsletter", "VIP"]), ("modified", ["Newsletter", "VIP"])]
        events.clear()
        emulator.add_customer(email="ann@example.com", segments=[2, 3])
        with django_capture_on_commit_callbacks(execute=True):
            hook("update_tags")
        assert events == [
            ("applied", ["Active customers"]),
            ("removed", ["VIP"]),
            ("modified", ["Active customers", "Newsletter"]),
        ]
        events.clear()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            hook("update_tags")
        assert events == []  # nothing before the commit
        for callback in callbacks:
            callback()
        assert events == [("modified", ["Active customers", "Newsletter"])]
    finally:
        tags_applied.disconnect(receivers["applied"])
        tags_removed.disconnect(receivers["removed"])
        tags_modified.disconnect(receivers["modified"])
    assert user.tags.count() == 2
