"""The whole path over loopback HTTP: the emulator signs and posts a reporting webhook as Customer.io does, the site
(its live server) stores the event, a real `webhook_worker` links it and reacts, and a tag it applies reaches the
emulator's manual segment through the outbox."""

import pytest

from tests.worker_processes import run_worker_until_idle
from users.models import Tag, User, UserTag
from webhooks.models import MessageEvent, MessageReaction

from .conftest import KEY, URL

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reporting_url(live_server):
    return live_server.url + URL


def send(emulator, url, person, metric, **options):
    return emulator.send_reporting_webhook(url, person, metric, KEY, **options)


def test_a_click_from_customerio_tags_the_user_and_the_segment_follows(emulator, emulator_env, reporting_url):
    vip = Tag.objects.create(segment_id=1, name="VIP", kind=Tag.Kind.MANUAL)
    MessageReaction.objects.create(metric="clicked", kind=MessageReaction.Kind.APPLY_TAG, tag=vip)
    bob = User.objects.create_user(username="bob", email="bob@example.com", password="x")
    emulator.clear_requests()

    sent = send(emulator, reporting_url, "bob@example.com", "clicked", link="https://example.com/offer")
    assert sent["answers"] == [{"status": 200, "body": {"status": "ok"}}]
    stored = MessageEvent.objects.get()
    assert (stored.event_id, stored.metric, stored.link, stored.user) == (
        sent["event_id"],
        "clicked",
        "https://example.com/offer",
        None,  # not yet: the worker links
    )

    run_worker_until_idle(emulator_env)

    stored.refresh_from_db()
    assert stored.user == bob
    assert UserTag.objects.filter(user=bob, tag=vip).exists()
    added = emulator.requests("/api/v1/segments/1/add_customers")
    assert [request["body"] for request in added] == [{"ids": ["bob@example.com"]}]


def test_bad_signatures_old_timestamps_and_repeats(emulator, reporting_url):
    bad = send(emulator, reporting_url, "ann@example.com", "delivered", bad_signature=True)
    old = send(emulator, reporting_url, "ann@example.com", "delivered", old_timestamp=True)
    assert [bad["answers"][0]["status"], old["answers"][0]["status"]] == [401, 401]
    assert bad["answers"][0]["body"]["error"] == old["answers"][0]["body"]["error"] == "invalid_signature"
    assert MessageEvent.objects.count() == 0

    repeated = send(emulator, reporting_url, "ann@example.com", "opened", repeat=3)
    assert [answer["body"] for answer in repeated["answers"]] == [
        {"status": "ok"},
        {"status": "ok", "duplicate": True},
        {"status": "ok", "duplicate": True},
    ]
    assert list(MessageEvent.objects.values_list("event_id", flat=True)) == [repeated["event_id"]]


def test_body_content_is_not_kept(emulator, reporting_url):
    sent = send(
        emulator, reporting_url, "cio_" + emulator.customer("ann@example.com")["cio_id"], "sent", body_content=True
    )
    assert "content" in sent["event"]["data"]
    assert sent["answers"][0]["status"] == 200
    stored = MessageEvent.objects.get()
    assert "message's body" not in str(MessageEvent.objects.values().get())
    assert stored.cio_id == emulator.customer("ann@example.com")["cio_id"]


def test_an_unknown_person_s_event_is_linked_when_a_journey_adds_them(
    emulator, emulator_env, reporting_url, live_server, access_key
):
    import requests

    newsletter = Tag.objects.create(segment_id=2, name="Newsletter", kind=Tag.Kind.MANUAL)
    MessageReaction.objects.create(metric="delivered", kind=MessageReaction.Kind.APPLY_TAG, tag=newsletter)
    sent = send(emulator, reporting_url, "cara+news@example.com", "delivered")
    run_worker_until_idle(emulator_env)
    waiting = MessageEvent.objects.get(event_id=sent["event_id"])
    assert (waiting.user, waiting.processed_at is not None) == (None, True)

    added = requests.post(
        f"{live_server.url}/?wpf_action=add&access_key={access_key}",
        json={"email": "cara+news@example.com"},
        timeout=30,
    )
    assert added.status_code == 200, added.text
    cara = User.objects.get(email="cara+news@example.com")
    waiting.refresh_from_db()
    assert waiting.user == cara

    run_worker_until_idle(emulator_env)
    assert UserTag.objects.filter(user=cara, tag=newsletter).exists()


def test_a_person_the_emulator_does_not_know_is_refused_by_the_emulator(emulator, reporting_url):
    import requests

    response = requests.post(
        f"{emulator.url}/_emulator/reporting_webhooks",
        json={"url": reporting_url, "person": "nobody@example.com", "metric": "sent", "signing_key": KEY},
        timeout=30,
    )
    assert response.status_code == 404
    assert response.json() == {"error": "no such customer: 'nobody@example.com'"}
