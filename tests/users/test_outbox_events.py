"""Events for Customer.io (users.tracking): track() queues a person event sent with its data and an id Customer.io
counts once; bad names and data are refused; the built-in events go only while their settings are on."""

import time

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils import timezone

from users.models import OutboxEntry, User
from users.tracking import track

from .test_outbox import PASSWORD, configure, send

pytestmark = pytest.mark.django_db


def test_track_sends_a_person_event_with_its_data(cio_emulator):
    user = User.objects.create_user(username="u", email="u@example.com")
    assert track(user, "course_completed", {"course": "Pottery", "score": 92})
    send()

    [event] = cio_emulator.events("u@example.com", name="course_completed")
    assert event["attributes"] == {"course": "Pottery", "score": 92}
    assert len(event["id"]) == 26  # the ULID Customer.io deduplicates by
    assert abs(event["timestamp"] - time.time()) < 60  # when it happened, not when it was sent


@pytest.mark.parametrize(
    ("name", "data", "complaint"),
    [
        ("", None, "event name"),
        (" spaced ", None, "event name"),
        ("ok", ["not", "a", "dict"], "dict"),
        ("ok", {"when": timezone.now()}, "JSON"),
        ("ok", {"user_pass": "x"}, "secret"),
        ("ok", {"nested": {"api_key": "x"}}, "secret"),
        ("ok", {"big": "x" * 31_000}, "30 KB"),
    ],
)
def test_track_refuses_bad_names_and_data(cio_emulator, name, data, complaint):
    user = User.objects.create_user(username="u", email="u@example.com")
    with pytest.raises(ValueError, match=complaint):
        track(user, name, data)
    assert not OutboxEntry.objects.filter(kind=OutboxEntry.Kind.EVENT).exists()


def test_built_in_events_are_off_until_turned_on(cio_emulator, client):
    user = User.objects.create_user(username="u", email="u@example.com", password=PASSWORD)
    client.force_login(user)
    assert not OutboxEntry.objects.filter(kind=OutboxEntry.Kind.EVENT).exists()

    configure(event_login=True)
    client.force_login(user)
    send()
    assert [event["name"] for event in cio_emulator.events("u@example.com")] == ["login"]


def test_tag_applied_on_the_site_and_access_refused_events(cio_emulator):
    from users.access import apply_tags
    from users.access.gates import TagGate
    from users.models import Tag

    configure(event_tag_applied=True, event_access_refused=True)
    course = Tag.objects.create(segment_id=7, name="Course", kind=Tag.Kind.MANUAL)
    user = User.objects.create_user(username="u", email="u@example.com")
    apply_tags(user, course)

    request = RequestFactory().get("/members/gold/")
    request.user = user
    refused = TagGate.of(any=["Gold"]).refusal(request)
    request.user = AnonymousUser()
    TagGate.of(any=["Gold"]).refusal(request)  # nobody to tell Customer.io about
    send()

    events = cio_emulator.events("u@example.com")
    assert refused.status_code == 403
    assert [(event["name"], event["attributes"]) for event in events] == [
        ("tag_applied_on_site", {"tag": "Course", "segment_id": 7}),
        ("access_refused", {"path": "/members/gold/", "rule": "any: Gold"}),
    ]
