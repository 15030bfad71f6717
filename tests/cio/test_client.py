"""The Customer.io client against the emulator, over real loopback HTTP."""

import json
import logging
import time

import pytest

from cio import get_client
from cio.client import deadline_in
from cio.errors import ContactNotFound, NotConfigured, RateLimited, Unauthorized, UpstreamError
from cio.track_api import identify_operation
from cio.transport import api_call_finished

pytestmark = pytest.mark.django_db

FIXTURE = {
    "segments": [
        {"id": 1, "name": "VIP", "type": "manual"},
        {"id": 2, "name": "Active", "type": "dynamic"},
    ],
    "customers": [
        {"email": "Ann@Example.com", "id": "a1", "attributes": {"first_name": "Ann", "age": 41}, "segments": [1, 2]},
        {"email": "a+b@x.io", "id": "ab", "attributes": {"first_name": "Plus"}, "segments": [2]},
        {"email": "carl@example.com", "id": "c1", "attributes": {}, "segments": []},
    ],
}


@pytest.fixture
def emulator(cio_emulator):
    cio_emulator.reset(FIXTURE)
    return cio_emulator


def test_list_segments(emulator):
    segments = get_client().list_segments()
    assert [(s["id"], s["name"], s["type"]) for s in segments] == [(1, "VIP", "manual"), (2, "Active", "dynamic")]
    [request] = emulator.requests()
    assert (request["method"], request["path"], request["status"]) == ("GET", "/v1/segments", 200)


def test_segment_customer_count(emulator):
    assert [get_client().get_segment_count(segment_id) for segment_id in (1, 2)] == [1, 2]
    emulator.add_customer(email="new@example.com", segments=[1])
    assert get_client().get_segment_count(1) == 2
    with pytest.raises(ContactNotFound):
        get_client().get_segment_count(99)
    paths = [request["path"] for request in emulator.requests()]
    assert paths[:2] == ["/v1/segments/1/customer_count", "/v1/segments/2/customer_count"]


def test_get_attributes_by_email_any_case(emulator):
    person = get_client().get_attributes("ann@example.com")
    assert person["identifiers"]["email"] == "Ann@Example.com"
    assert person["attributes"]["first_name"] == "Ann"
    assert person["attributes"]["age"] == "41"  # Customer.io returns attribute values as strings
    [request] = emulator.requests()
    assert request["query"] == {"id_type": "email"}


def test_an_email_with_a_plus_arrives_intact(emulator):
    person = get_client().get_attributes("a+b@x.io")
    assert person["attributes"]["first_name"] == "Plus"
    assert [s["name"] for s in get_client().get_segments("a+b@x.io")] == ["Active"]


def test_get_segments(emulator):
    segments = get_client().get_segments("ann@example.com")
    assert sorted(s["id"] for s in segments) == [1, 2]
    assert get_client().get_segments("carl@example.com") == []


def test_unknown_person_is_contact_not_found(emulator):
    with pytest.raises(ContactNotFound) as caught:
        get_client().get_attributes("nobody@example.com")
    assert caught.value.status == 404
    assert "404" in str(caught.value) and "GET /v1/customers/" in str(caught.value)
    assert len(emulator.requests()) == 1  # a 404 is not retried


def test_attributes_batch_splits_at_100_and_omits_unknown(emulator):
    ids = ["ann@example.com", "a+b@x.io"] + [f"missing{n}@example.com" for n in range(248)]
    people = get_client().get_attributes_batch(ids)
    assert sorted(p["identifiers"]["email"] for p in people) == ["Ann@Example.com", "a+b@x.io"]
    calls = emulator.requests()
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/v1/customers/attributes")] * 3
    assert [len(c["body"]["ids"]) for c in calls] == [100, 100, 50]


def test_membership_pages_follow_next(emulator):
    emulator.load({"customers": [{"email": f"m{n}@example.com", "segments": [1]} for n in range(5)]})
    members = list(get_client().iter_segment_members(1, page_size=2))
    emails = [m["email"] for m in members]
    assert sorted(emails) == sorted(["Ann@Example.com"] + [f"m{n}@example.com" for n in range(5)])
    assert all(m["cio_id"] for m in members)
    calls = emulator.requests()
    assert len(calls) == 3
    assert [c["query"].get("limit") for c in calls] == ["2", "2", "2"]
    assert "start" not in calls[0]["query"] and calls[1]["query"]["start"]


def test_identify_updates_an_existing_person_and_never_creates_one(emulator):
    get_client().identify("ann@example.com", {"site_password": "s3cret-value", "plan": "gold"})
    stored = emulator.customer("ann@example.com")
    assert stored["attributes"]["plan"] == "gold"
    [request] = emulator.requests()
    assert request["method"] == "PUT" and request["body"]["_update"] is True

    get_client().identify("ghost@example.com", {"plan": "gold"})  # 200 {} from Customer.io: not a failure
    assert emulator.customer("ghost@example.com") is None


def test_identify_by_cio_id(emulator):
    cio_id = emulator.customer("carl@example.com")["cio_id"]
    get_client().identify(f"cio_{cio_id}", {"plan": "silver"})
    assert emulator.customer("carl@example.com")["attributes"]["plan"] == "silver"


def test_batch_splits_by_size_and_applies_every_operation(emulator):
    emulator.load({"customers": [{"email": f"p{n}@example.com"} for n in range(40)]})
    filler = "x" * 20_000
    operations = [identify_operation({"email": f"p{n}@example.com"}, {"note": filler, "n": n}) for n in range(40)]
    result = get_client().batch(operations)
    assert result.failures == []
    assert result.sent == 40
    batches = emulator.requests("/api/v2/batch")
    assert len(batches) == result.requests == 2
    assert all(len(json.dumps(b["body"])) < 500 * 1024 for b in batches)
    assert emulator.customer("p39@example.com")["attributes"]["n"] in (39, "39")


def test_batch_reports_207_failures_and_oversized_operations_by_index(emulator):
    operations = [
        identify_operation({"email": "ann@example.com"}, {"plan": "gold"}),
        identify_operation({"email": "ann@example.com", "id": "a1"}, {"plan": "two identifiers"}),
        identify_operation({"email": "carl@example.com"}, {"blob": "y" * 40_000}),
        identify_operation({"email": "carl@example.com"}, {"plan": "bronze"}),
    ]
    result = get_client().batch(operations)
    assert sorted(f.index for f in result.failures) == [1, 2]
    assert result.sent == 2
    assert result.requests == 1
    assert emulator.customer("carl@example.com")["attributes"]["plan"] == "bronze"


@pytest.mark.parametrize("retry_after_header", [True, False])
def test_429_is_retried_until_it_succeeds(emulator, settings, retry_after_header):
    settings.CUSTOMERIO_APP_API_RATE = 0  # our limiter off, so the emulator's own limit is hit
    # Without Retry-After, the backoff alone must outlast the window: full jitter may draw short waits, so the
    # doubling ceilings (0.4, 0.8, ... 30 s) are given enough attempts to get there.
    settings.CUSTOMERIO_RETRY_BACKOFF = 0.4
    settings.CUSTOMERIO_MAX_RETRIES = 10
    emulator.configure(rate_limit=2, retry_after_header=retry_after_header)
    client = get_client()
    results = [client.get_segments("ann@example.com") for _ in range(4)]
    assert all(len(r) == 2 for r in results)
    statuses = [r["status"] for r in emulator.requests()]
    assert statuses.count(200) == 4
    assert 429 in statuses


def test_500s_give_upstream_error_after_the_bounded_retries(emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 2
    emulator.set_faults(fail_rate=1.0, fail_status=500)
    with pytest.raises(UpstreamError) as caught:
        get_client().get_attributes("ann@example.com")
    assert caught.value.status == 500
    assert [r["status"] for r in emulator.requests()] == [500, 500, 500]


def test_a_persistent_429_ends_as_rate_limited(emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 1
    emulator.set_faults(fail_rate=1.0, fail_status=429)
    with pytest.raises(RateLimited):
        get_client().list_segments()
    assert len(emulator.requests()) == 2


def test_the_deadline_cuts_a_slow_call_short(emulator):
    emulator.set_faults(latency_ms=3000)
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        get_client().get_attributes("ann@example.com", deadline=deadline_in(0.5))
    assert time.monotonic() - started < 2.5


def test_the_deadline_stops_retries(emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 10
    settings.CUSTOMERIO_RETRY_BACKOFF = 0.4
    emulator.set_faults(fail_rate=1.0, fail_status=503)
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        get_client().list_segments(deadline=deadline_in(1.0))
    assert time.monotonic() - started < 1.5
    # The deadline ended it, not the 10 retries (waits are drawn from 0 to 0.4, 0.8, 1.6, ... s: full jitter).
    assert len(emulator.requests()) < 11


def test_a_timeout_is_retried_then_reported(emulator, settings):
    settings.CUSTOMERIO_READ_TIMEOUT = 0.3
    settings.CUSTOMERIO_MAX_RETRIES = 1
    emulator.set_faults(timeout_rate=1.0, timeout_seconds=2)
    with pytest.raises(UpstreamError, match="timed out"):
        get_client().get_segments("ann@example.com")


def test_wrong_key_is_unauthorized(emulator, settings):
    settings.CUSTOMERIO_APP_API_KEY = "wrong-app-key"
    with pytest.raises(Unauthorized):
        get_client().list_segments()
    settings.CUSTOMERIO_TRACK_API_KEY = "wrong-track-key"
    with pytest.raises(Unauthorized):
        get_client().identify("ann@example.com", {"plan": "x"})


def test_missing_credentials_say_which_setting(settings):
    settings.CUSTOMERIO_APP_API_KEY = ""
    with pytest.raises(NotConfigured, match="CUSTOMERIO_APP_API_KEY"):
        get_client().list_segments()


def test_no_secret_reaches_an_exception_or_a_log_line(emulator, settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.CUSTOMERIO_MAX_RETRIES = 1
    password = "Generated-Pa55word-XYZ"
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/", method="PUT")
    with pytest.raises(UpstreamError) as caught:
        get_client().identify("ann@example.com", {"site_password": password})
    settings.CUSTOMERIO_APP_API_KEY = "wrong-app-key"
    with pytest.raises(Unauthorized) as unauthorized:
        get_client().list_segments()
    texts = [str(caught.value), repr(caught.value), str(unauthorized.value), caplog.text]
    texts += [str(get_client().config)]
    for secret in [password, "emulator-track-key", "wrong-app-key", "emulator-site:", "Basic ", "Bearer "]:
        assert not any(secret in text for text in texts), secret


def test_every_call_is_counted(emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 1
    seen = []

    def record(sender, **call):
        seen.append((call["api"], call["method"], call["path"], call["status"]))

    api_call_finished.connect(record)
    try:
        get_client().list_segments()
        get_client().identify("ann@example.com", {"plan": "x"})
    finally:
        api_call_finished.disconnect(record)
    assert seen == [
        ("app", "GET", "/v1/segments", 200),
        ("track", "PUT", "/api/v1/customers/ann%40example.com", 200),
    ]
