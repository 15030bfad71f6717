"""The reporting webhook accepts only what Customer.io signed: X-CIO-Signature, the hex HMAC-SHA256 under a signing key
of `v0:<X-CIO-Timestamp>:<raw body>`, at most 5 minutes from the site's clock. Anything else is refused 401 in JSON,
counted and throttled like the journey webhook's wrong keys, and leaves no row of its own."""

import json
import time

import pytest

from users.models import ActivityLog
from webhooks.intake import refusals as refused
from webhooks.models import MessageEvent, RefusedRequestWindow

from .conftest import KEY, OLD_KEY, URL, event, post, signature

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.50"
MISMATCH = {
    "error": "invalid_signature",
    "detail": "The signature matches no signing key (CUSTOMERIO_REPORTING_SIGNING_KEYS).",
}
UNSIGNED = {
    "error": "invalid_signature",
    "detail": "The request is not signed: X-CIO-Timestamp and X-CIO-Signature are required.",
}
EXPIRED = {
    "error": "invalid_signature",
    "detail": "The signature's timestamp is more than 5 minutes away from the site's clock: a replay, or a clock "
    "out of step.",
}


def stored_rows() -> dict:
    refused.flush()
    return {
        "events": MessageEvent.objects.count(),
        "activity": ActivityLog.objects.count(),
        "refused": sum(RefusedRequestWindow.objects.values_list("count", flat=True)),
    }


def test_a_signed_event_is_stored_and_answered_200(client):
    response = post(client, event())
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert MessageEvent.objects.get().event_id == "01HREPORTING0000000000001"


@pytest.mark.parametrize(
    ("case", "changes", "answer"),
    [
        ("signed with another key", {"key": "not-the-signing-key"}, MISMATCH),
        ("a signature of another body", {"signed": b"{}"}, MISMATCH),
        ("garbage for a signature", {"signed": "zz" * 40}, MISMATCH),
        ("no signature", {"headers": {"X-CIO-Signature": None}}, UNSIGNED),
        ("no timestamp", {"headers": {"X-CIO-Timestamp": None}}, UNSIGNED),
        ("a timestamp that is not a number", {"headers": {"X-CIO-Timestamp": "yesterday"}}, UNSIGNED),
        ("signed 6 minutes ago", {"timestamp": -360}, EXPIRED),
        ("signed 6 minutes ahead", {"timestamp": +360}, EXPIRED),
    ],
)
def test_a_request_not_signed_right_is_refused_401_and_stores_nothing(client, case, changes, answer):
    # Times and signatures are made now, not when the cases were collected (a long run would make them stale).
    if "timestamp" in changes:
        changes = {**changes, "timestamp": int(time.time()) + changes["timestamp"]}
    if isinstance(changes.get("signed"), bytes):
        changes = {**changes, "signed": signature(changes["signed"], int(time.time()))}
    before = stored_rows()
    response = post(client, event(), REMOTE_ADDR=ADDRESS, **changes)
    assert response.status_code == 401, case
    assert response.json() == answer
    assert response["WWW-Authenticate"] == "X-CIO-Signature"
    after = stored_rows()
    assert after["events"] == before["events"] == 0
    assert after["refused"] == before["refused"] + 1  # counted per address, as a wrong key is
    assert RefusedRequestWindow.objects.get(address=ADDRESS).actions == ["reporting"]


def test_the_signature_is_over_the_raw_body_not_its_meaning(client):
    raw = json.dumps(event()).encode()
    timestamp = int(time.time())
    same_json_other_bytes = json.dumps(event(), indent=2).encode()
    response = post(client, same_json_other_bytes, timestamp=timestamp, signed=signature(raw, timestamp))
    assert response.status_code == 401
    assert post(client, raw, timestamp=timestamp).status_code == 200


def test_a_replay_within_five_minutes_stores_nothing_new_and_later_is_refused(client, monkeypatch):
    raw = json.dumps(event(metric="opened")).encode()
    sent_at = int(time.time())
    first = post(client, raw, timestamp=sent_at)
    replay = post(client, raw, timestamp=sent_at)  # the same request, word for word
    assert first.json() == {"status": "ok"}
    assert replay.status_code == 200
    assert replay.json() == {"status": "ok", "duplicate": True}
    assert MessageEvent.objects.count() == 1

    later = sent_at + 301
    monkeypatch.setattr(time, "time", lambda: later)
    replayed_later = post(client, raw, timestamp=sent_at)
    assert replayed_later.status_code == 401
    assert replayed_later.json() == EXPIRED
    assert MessageEvent.objects.count() == 1


def test_two_keys_are_valid_during_a_rotation(client, settings):
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = [KEY, OLD_KEY]
    assert post(client, event(event_id="evt-new-key"), key=KEY).status_code == 200
    assert post(client, event(event_id="evt-old-key"), key=OLD_KEY).status_code == 200
    # The rotation ends: the old key is taken off the list.
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = [KEY]
    assert post(client, event(event_id="evt-too-late"), key=OLD_KEY).json() == MISMATCH
    assert set(MessageEvent.objects.values_list("event_id", flat=True)) == {"evt-new-key", "evt-old-key"}


def test_without_signing_keys_the_endpoint_is_off(client, settings):
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = []
    before = stored_rows()
    response = post(client, event())
    assert response.status_code == 404
    assert response.json() == {
        "error": "reporting_webhook_off",
        "detail": "The reporting webhook is off: the site has no signing key (set CUSTOMERIO_REPORTING_SIGNING_KEYS).",
    }
    assert stored_rows() == before  # not stored, not counted


def test_refusals_are_throttled_per_address_and_signed_requests_never(client, settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 3
    answers = [post(client, event(), key="wrong", REMOTE_ADDR=ADDRESS) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]
    assert (
        answers[-1]
        .json()["detail"]
        .startswith("Too many requests with a wrong or missing signature from this address: try again in")
    )
    assert int(answers[-1]["Retry-After"]) >= 1
    # Customer.io's own request from the same address still gets through.
    assert post(client, event(), REMOTE_ADDR=ADDRESS).status_code == 200


def test_one_throttle_for_both_webhooks(client, settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 2
    client.post("/?wpf_action=test&access_key=wrong", "{}", content_type="application/json", REMOTE_ADDR=ADDRESS)
    client.post("/?wpf_action=test&access_key=wrong", "{}", content_type="application/json", REMOTE_ADDR=ADDRESS)
    assert post(client, event(), key="wrong", REMOTE_ADDR=ADDRESS).status_code == 429


def test_a_body_over_the_limit_is_refused_before_it_is_read(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    big = event(note="x" * 2000)
    response = post(client, big)
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large", "detail": "The body is larger than 1000 bytes."}
    assert MessageEvent.objects.count() == 0


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post(client, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "POST"


def test_the_journey_allowlist_does_not_apply_to_the_signed_endpoint(client, settings):
    from wpfusion_site.allowed_networks import parse

    settings.WEBHOOK_ALLOWED_NETWORKS = parse("customerio-us")
    assert post(client, event(), REMOTE_ADDR=ADDRESS).status_code == 200  # the signature is its proof


def test_the_signing_keys_never_reach_the_log_or_an_answer(client, caplog, settings):
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = [KEY, OLD_KEY]
    answers = [post(client, event(), key="wrong"), post(client, event()), post(client, b"not json")]
    refused.flush()
    for text in [caplog.text, *(answer.content.decode() for answer in answers)]:
        assert KEY not in text
        assert OLD_KEY not in text


def test_a_wrong_signature_counts_as_a_wrong_key_and_none_as_a_missing_one(client):
    post(client, event(), key="wrong", REMOTE_ADDR=ADDRESS)
    post(client, event(), headers={"X-CIO-Signature": None}, REMOTE_ADDR=ADDRESS)
    client.get(URL, REMOTE_ADDR=ADDRESS)  # a 405 without a signature: refused, counted too
    refused.flush()
    row = RefusedRequestWindow.objects.get(address=ADDRESS)
    assert (row.count, row.wrong_key, row.missing_key) == (3, 1, 2)
    line = ActivityLog.objects.get()
    assert line.message.startswith(f"Refused 3 webhook requests with a wrong or missing access key from {ADDRESS}")
