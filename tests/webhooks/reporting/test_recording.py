"""What the reporting webhook keeps of an event (which message, for whom, what happened, when; never the message),
once per Customer.io event_id, with one INSERT on the way to the answer."""

import json
from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from users.models import ActivityLog
from webhooks.message_events import recording
from webhooks.models import MessageEvent

from .conftest import event, post

pytestmark = pytest.mark.django_db

SENT_WITH_BODY_CONTENT = {
    "subject": "Your secret offer, Ann",
    "content": "<p>Dear Ann, the code is SAVE-40-XYZ</p>",
    "headers": {"X-Mailer": "Customer.io", "Subject": "Your secret offer, Ann"},
}


def test_what_is_kept_of_a_click(client):
    clicked = event(
        metric="clicked",
        event_id="01E4C4HDQ7P5RR3SKEA6MWJQJ8",
        href="https://example.com/offer?utm=1",
        link_id=2,
        journey_id="01GW2F5T3Q9V",
        **SENT_WITH_BODY_CONTENT,
    )
    clicked["timestamp"] = 1_613_063_089
    assert post(client, clicked).status_code == 200

    row = MessageEvent.objects.get()
    assert {
        field: getattr(row, field)
        for field in (
            "event_id",
            "metric",
            "channel",
            "occurred_at",
            "delivery_id",
            "campaign_id",
            "broadcast_id",
            "action_id",
            "journey_id",
            "recipient",
            "email",
            "cio_id",
            "customer_id",
            "link",
            "user_id",
            "processed_at",
        )
    } == {
        "event_id": "01E4C4HDQ7P5RR3SKEA6MWJQJ8",
        "metric": "clicked",
        "channel": "email",
        "occurred_at": datetime(2021, 2, 11, 17, 4, 49, tzinfo=UTC),
        "delivery_id": "RAECAAFwnUSneIa0ZXkmq8EdkAM==",
        "campaign_id": 12,
        "broadcast_id": None,
        "action_id": 36,
        "journey_id": "01GW2F5T3Q9V",
        "recipient": "ann@example.com",
        "email": "ann@example.com",
        "cio_id": "cio-ann",
        "customer_id": "ann",
        "link": "https://example.com/offer?utm=1",
        "user_id": None,  # linked by the worker, not on the way to the answer
        "processed_at": None,
    }
    assert row.sent_by == "campaign 12"


def test_the_message_itself_is_never_stored(client):
    assert post(client, event(metric="sent", **SENT_WITH_BODY_CONTENT)).status_code == 200
    stored = json.dumps(list(MessageEvent.objects.values()), default=str)
    for content in ("secret offer", "SAVE-40-XYZ", "X-Mailer"):
        assert content not in stored


def test_a_retried_event_is_stored_once(client):
    bounced = event(metric="bounced", failure_message="550 5.1.1 mailbox unavailable")
    answers = [post(client, bounced) for _ in range(3)]
    assert [answer.json() for answer in answers] == [
        {"status": "ok"},
        {"status": "ok", "duplicate": True},
        {"status": "ok", "duplicate": True},
    ]
    assert MessageEvent.objects.get().failure == "550 5.1.1 mailbox unavailable"


def test_an_accepted_event_costs_one_statement(client):
    post(client, event(event_id="evt-first"))  # the first one wakes the worker (it looks for a waiting task)
    with CaptureQueriesContext(connection) as queries:
        response = post(client, event(event_id="evt-second"))
    assert response.status_code == 200
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]


def test_other_channels_and_subscription_events(client):
    sms = event(metric="delivered", event_id="evt-sms", channel="sms", recipient="+15555550100")
    sms["data"]["identifiers"] = {"id": "bob", "cio_id": "cio-bob"}
    unsubscribed = {
        "event_id": "evt-unsub",
        "object_type": "customer",
        "metric": "unsubscribed",
        "timestamp": 1_765_000_000,
        "data": {"customer_id": "cara", "email_address": "cara@example.com", "identifiers": {"id": "cara"}},
    }
    broadcast = event(metric="opened", event_id="evt-broadcast", broadcast_id="9")
    del broadcast["data"]["campaign_id"]
    for body in (sms, unsubscribed, broadcast):
        assert post(client, body).status_code == 200
    rows = {row.event_id: row for row in MessageEvent.objects.all()}
    assert (rows["evt-sms"].channel, rows["evt-sms"].recipient, rows["evt-sms"].email) == ("sms", "+15555550100", "")
    assert (rows["evt-unsub"].channel, rows["evt-unsub"].email) == ("customer", "cara@example.com")
    assert rows["evt-broadcast"].sent_by == "broadcast 9"


def test_odd_values_are_left_out_rather_than_refused(client):
    odd = event(event_id="evt-odd", campaign_id=-4, action_id="thirty", href={"not": "a link"})
    odd["timestamp"] = "yesterday"
    odd["object_type"] = ["email"]
    assert post(client, odd).status_code == 200
    row = MessageEvent.objects.get()
    assert (row.campaign_id, row.action_id, row.link, row.channel) == (None, None, "", "")
    assert row.occurred_at is not None  # the time it arrived


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "The body is not valid JSON."),
        (b"[1, 2]", "The JSON body must be an object."),
        (
            json.dumps({"metric": "sent"}).encode(),
            "'event_id' is missing: a Customer.io reporting event has a non-empty 'event_id' string.",
        ),
        (
            json.dumps({"event_id": "e", "metric": 5}).encode(),
            "'metric' is missing: a Customer.io reporting event has a non-empty 'metric' string.",
        ),
        (json.dumps({"event_id": "e" * 101, "metric": "sent"}).encode(), "'event_id' is longer than 100 characters."),
    ],
)
def test_a_signed_body_the_site_cannot_read_is_a_400_the_admin_hears_of(client, body, detail):
    response = post(client, body)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_payload", "detail": detail}
    assert MessageEvent.objects.count() == 0
    line = ActivityLog.objects.get()
    assert line.level == ActivityLog.Level.WARNING
    assert line.message == (
        f"Refused a signed Customer.io reporting webhook: {detail} (more in the next minute are only logged)."
    )


def test_one_activity_line_a_minute_for_unreadable_events(client):
    for _ in range(5):
        assert post(client, b"not json").status_code == 400
    assert ActivityLog.objects.count() == 1


def test_a_database_failure_answers_503_so_customerio_retries(client, monkeypatch):
    def failing(values):
        raise DatabaseError("disk full")

    monkeypatch.setattr(recording, "record", failing)
    response = post(client, event())
    assert response.status_code == 503
    assert response.json() == {"error": "database_busy", "detail": "The site's database failed; try again."}
