"""The Customer.io emulator's person events in /api/v2/batch, over real loopback HTTP: recorded per person and read
back through /_emulator/customers/<identifier>/events and the Python helpers, deduplicated by their ULID, invalid or
too large entries reported by batch_index while the rest apply, applied in order with identifies, and refused or
failed by the fault plan as identifies are."""

import pytest

from cio_emulator import EmulatorControl

from .conftest import TIMEOUT, TRACK_AUTH, control, event, identify, track_batch


def ulid(n: int) -> str:
    return f"01J{n:023d}"  # digits are valid Crockford base32, and a leading 0 keeps it within 128 bits


def events_of(http, emulator, identifier, **params):
    response = http.get(f"{emulator.url}/_emulator/customers/{identifier}/events", params=params, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def without_received_at(events):
    return [{key: value for key, value in item.items() if key != "received_at"} for item in events]


def test_events_are_recorded_for_the_person_each_names(http, emulator):
    operations = [
        event({"email": "ann@example.com"}, "purchase", id=ulid(1), timestamp=1700000000, attributes={"sku": "W-1"}),
        event({"id": "b2"}, "login"),
        event({"id": "a1"}, "  refund  ", id=ulid(2), attributes={"sku": "W-1", "amount": 9.5}),
    ]

    response = track_batch(http, emulator, operations)

    assert (response.status_code, response.json()) == (200, {})
    ann = events_of(http, emulator, "a1")
    assert without_received_at(ann) == [
        {"name": "purchase", "id": ulid(1), "timestamp": 1700000000, "attributes": {"sku": "W-1"}},
        {"name": "refund", "id": ulid(2), "timestamp": None, "attributes": {"sku": "W-1", "amount": 9.5}},
    ]
    assert all(isinstance(item["received_at"], float) for item in ann)
    assert without_received_at(events_of(http, emulator, "bob@example.com")) == [
        {"name": "login", "id": None, "timestamp": None, "attributes": {}}
    ]
    assert events_of(http, emulator, "a%2Bb%40x.io") == []
    # An event is no attribute change: the person's attributes stay as they were.
    assert control(http, emulator, "GET", "customers/a1")["attributes"]["first_name"] == "Ann"


def test_events_read_back_by_any_identifier_and_name_through_the_helpers(http, emulator):
    track_batch(http, emulator, [event({"id": "a1"}, "purchase"), event({"id": "a1"}, "login")])
    cio_id = control(http, emulator, "GET", "customers/a1")["cio_id"]
    client = EmulatorControl(emulator.url)

    assert [item["name"] for item in client.events("ANN@example.com")] == ["purchase", "login"]
    assert [item["name"] for item in client.events(f"cio_{cio_id}", name="login")] == ["login"]
    assert [item["name"] for item in emulator.events("a1", name="purchase")] == ["purchase"]
    assert client.events("nobody@example.com") == emulator.events("nobody@example.com") == []
    missing = http.get(f"{emulator.url}/_emulator/customers/nobody@example.com/events", timeout=TIMEOUT)
    assert (missing.status_code, missing.json()) == (404, {"error": "no such customer"})


def test_all_events_lists_everybody_oldest_first_with_their_identifiers(http, emulator):
    track_batch(http, emulator, [event({"id": "b2"}, "login"), event({"id": "a1"}, "login"), event({"id": "a1"}, "x")])
    cio_id = control(http, emulator, "GET", "customers/b2")["cio_id"]

    logins = control(http, emulator, "GET", "events?name=login")

    assert [item["person"]["id"] for item in logins] == ["b2", "a1"]
    assert logins[0]["person"] == {"email": "bob@example.com", "id": "b2", "cio_id": cio_id}
    assert len(EmulatorControl(emulator.url).all_events()) == len(emulator.all_events()) == 3
    control(http, emulator, "POST", "reset")
    assert control(http, emulator, "GET", "events") == []


def test_an_event_id_already_recorded_for_the_person_is_accepted_and_not_recorded_again(http, emulator):
    first = track_batch(http, emulator, [event({"id": "a1"}, "purchase", id=ulid(7), attributes={"n": 1})])
    operations = [
        event({"email": "ann@example.com"}, "purchase", id=ulid(7), attributes={"n": 2}),
        event({"id": "a1"}, "purchase", id=ulid(7).lower(), attributes={"n": 3}),  # ULIDs ignore letter case
        event({"id": "a1"}, "purchase", id=ulid(8), attributes={"n": 4}),
        event({"id": "a1"}, "purchase", id=ulid(8), attributes={"n": 5}),
        event({"id": "b2"}, "purchase", id=ulid(7), attributes={"n": 6}),  # another person's history is their own
        event({"id": "a1"}, "no_id"),
        event({"id": "a1"}, "no_id"),  # without an id there is nothing to deduplicate by
    ]

    again = track_batch(http, emulator, operations)

    assert [(r.status_code, r.json()) for r in (first, again)] == [(200, {}), (200, {})]
    assert [item["attributes"].get("n") for item in events_of(http, emulator, "a1")] == [1, 4, None, None]
    assert [item["attributes"]["n"] for item in events_of(http, emulator, "b2")] == [6]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"type": "person", "identifiers": {"id": "a1"}, "action": "event"}, "name"),
        (event({"id": "a1"}, 42), "name"),
        (event({"id": "a1"}, "   "), "name"),
        (event({"id": "a1", "email": "ann@example.com"}, "purchase"), "identifiers"),
        (event({}, "purchase"), "identifiers"),
        (event({"phone": "+4712345678"}, "purchase"), "identifiers"),
        (event({"id": "a1"}, "purchase", timestamp="1700000000"), "timestamp"),
        (event({"id": "a1"}, "purchase", timestamp=1700000000.5), "timestamp"),
        (event({"id": "a1"}, "purchase", timestamp=True), "timestamp"),
        (event({"id": "a1"}, "purchase", attributes=["sku"]), "attributes"),
        (event({"id": "a1"}, "purchase", id="6f1c1b0e-8a4f-4c3e-9a57-3f2d1e0c9b8a"), "id"),
        (event({"id": "a1"}, "purchase", id=12345), "id"),
        ({**event({"id": "a1"}, "purchase"), "type": "object"}, "type"),
    ],
)
def test_an_invalid_event_entry_is_reported_by_index_and_the_rest_apply(http, emulator, entry, field):
    operations = [event({"id": "a1"}, "before"), entry, identify({"id": "b2"}, plan="gold"), event({"id": "b2"}, "x")]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 207
    [error] = response.json()["errors"]
    assert (error["batch_index"], error["reason"], error["field"]) == (1, "invalid", field)
    assert error["message"]
    assert [item["name"] for item in events_of(http, emulator, "a1")] == ["before"]
    assert control(http, emulator, "GET", "customers/b2")["attributes"]["plan"] == "gold"
    assert [item["name"] for item in events_of(http, emulator, "b2")] == ["x"]


def test_an_event_entry_over_32_kb_is_reported_by_index_and_the_rest_apply(http, emulator):
    operations = [
        event({"id": "a1"}, "small", attributes={"blob": "x" * (31 * 1024)}),
        event({"id": "a1"}, "large", attributes={"blob": "x" * (33 * 1024)}),
        event({"id": "b2"}, "small"),
    ]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 207
    [error] = response.json()["errors"]
    assert (error["batch_index"], error["reason"], error["field"]) == (1, "too_large", "batch")
    assert [item["name"] for item in events_of(http, emulator, "a1")] == ["small"]
    assert [item["name"] for item in events_of(http, emulator, "b2")] == ["small"]


def test_a_request_over_500_kb_is_refused_whole_valid_and_too_large_entries_alike(http, emulator):
    operations = [
        event({"id": "a1"}, "fits"),
        event({"id": "a1"}, "too_large", attributes={"blob": "x" * (33 * 1024)}),
        *(event({"id": f"p{n}"}, "filler", attributes={"blob": "x" * (30 * 1024)}) for n in range(16)),
    ]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 413
    assert "error" in response.json()["meta"]
    assert events_of(http, emulator, "a1") == []
    assert control(http, emulator, "GET", "status")["customers"] == 3


def test_an_identify_then_an_event_for_a_new_person_in_one_batch(http, emulator):
    operations = [
        identify({"email": "carol@example.com"}, first_name="Carol"),
        event({"email": "carol@example.com"}, "signed_up", id=ulid(1)),
        # In order: the event above created dave, so this update-only identify finds him.
        event({"id": "dave"}, "visited"),
        identify({"id": "dave"}, first_name="Dave", _update=True),
    ]

    response = track_batch(http, emulator, operations)

    assert (response.status_code, response.json()) == (200, {})
    assert control(http, emulator, "GET", "customers/carol@example.com")["attributes"] == {"first_name": "Carol"}
    assert [item["name"] for item in events_of(http, emulator, "carol@example.com")] == ["signed_up"]
    assert control(http, emulator, "GET", "customers/dave")["attributes"] == {"first_name": "Dave"}
    assert [item["name"] for item in events_of(http, emulator, "dave")] == ["visited"]


def test_an_event_for_an_unknown_cio_id_is_accepted_and_dropped(http, emulator):
    response = track_batch(http, emulator, [event({"cio_id": "f00dfeed"}, "purchase")])

    assert (response.status_code, response.json()) == (200, {})
    assert control(http, emulator, "GET", "status")["customers"] == 3
    assert control(http, emulator, "GET", "events") == []


def test_reject_identifiers_refuses_the_event_entries_naming_them(http, emulator):
    control(http, emulator, "POST", "faults", {"reject_identifiers": ["b2", "new@example.com"]})
    operations = [
        event({"id": "a1"}, "kept"),
        event({"id": "b2"}, "refused"),
        event({"email": "new@example.com"}, "refused"),
        identify({"id": "b2"}, plan="refused"),
    ]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [(error["batch_index"], error["field"]) for error in errors] == [(n, "identifiers") for n in (1, 2, 3)]
    assert [item["name"] for item in events_of(http, emulator, "a1")] == ["kept"]
    assert events_of(http, emulator, "b2") == []
    assert http.get(f"{emulator.url}/_emulator/customers/new@example.com", timeout=TIMEOUT).status_code == 404


def test_an_injected_500_records_no_event_and_the_retry_records_it_once(http, emulator):
    control(http, emulator, "POST", "faults", {"fail_rate": 1, "path_prefix": "/api/v2/batch"})
    operations = [event({"id": "a1"}, "purchase", id=ulid(3)), event({"email": "new@example.com"}, "signed_up")]

    failed = track_batch(http, emulator, operations)
    assert failed.status_code == 500
    assert events_of(http, emulator, "a1") == []
    assert http.get(f"{emulator.url}/_emulator/customers/new@example.com", timeout=TIMEOUT).status_code == 404

    control(http, emulator, "POST", "faults", {})
    retries = [track_batch(http, emulator, operations[:1]).status_code for _ in range(2)]

    assert retries == [200, 200]
    assert [item["id"] for item in events_of(http, emulator, "a1")] == [ulid(3)]


def test_event_entries_need_track_credentials(http, emulator):
    body = {"batch": [event({"id": "a1"}, "purchase")]}
    wrong = (TRACK_AUTH[0], "wrong-key")

    response = http.post(f"{emulator.url}/api/v2/batch", json=body, auth=wrong, timeout=TIMEOUT)

    assert response.status_code == 401
    assert events_of(http, emulator, "a1") == []
