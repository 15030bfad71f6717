"""The Customer.io emulator's Track API writes: identify (PUT /api/v1/customers) merging, creating or refusing, and
/api/v2/batch applying its operations and reporting the invalid ones by index; concurrent writes all land."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import TIMEOUT, TRACK_AUTH, app_get, control, identify, track_batch, track_put


def test_identify_merges_attributes(http, emulator):
    response = track_put(http, emulator, "a1", {"last_name": "Archer", "age": 43, "first_name": None})

    assert (response.status_code, response.json()) == (200, {})
    stored = control(http, emulator, "GET", "customers/a1")
    assert stored["attributes"] == {"age": 43, "vip": True, "score": 1.5, "last_name": "Archer"}
    assert app_get(http, emulator, "/v1/customers/a1/attributes").json()["customer"]["attributes"]["age"] == "43"


def test_identify_by_encoded_email_updates_that_person(http, emulator):
    assert track_put(http, emulator, "A%2BB%40x.io", {"plan": "pro"}).status_code == 200

    assert control(http, emulator, "GET", "customers/a%2Bb%40x.io")["attributes"]["plan"] == "pro"
    assert control(http, emulator, "GET", "status")["customers"] == 3


def test_identify_with_update_flag_does_not_create_anybody(http, emulator):
    response = track_put(http, emulator, "new@example.com", {"first_name": "New", "_update": True})

    assert (response.status_code, response.json()) == (200, {})
    assert http.get(f"{emulator.url}/_emulator/customers/new@example.com", timeout=TIMEOUT).status_code == 404
    assert control(http, emulator, "GET", "status")["customers"] == 3


def test_identify_creates_a_missing_person_without_storing_update_flag(http, emulator):
    assert track_put(http, emulator, "new@example.com", {"first_name": "New", "_update": False}).status_code == 200

    stored = control(http, emulator, "GET", "customers/NEW@example.com")
    assert (stored["email"], stored["id"], stored["attributes"]) == ("new@example.com", None, {"first_name": "New"})


def test_identify_naming_two_people_changes_nothing(http, emulator):
    assert track_put(http, emulator, "a1", {"email": "bob@example.com", "first_name": "Mixed"}).status_code == 200

    assert control(http, emulator, "GET", "customers/a1")["attributes"]["first_name"] == "Ann"
    assert control(http, emulator, "GET", "customers/b2")["attributes"]["first_name"] == "Bob"


def test_identify_by_cio_id_may_change_identifiers(http, emulator):
    cio_id = control(http, emulator, "GET", "customers/b2")["cio_id"]

    assert track_put(http, emulator, f"cio_{cio_id}", {"email": "robert@example.com"}).status_code == 200

    assert control(http, emulator, "GET", "customers/b2")["email"] == "robert@example.com"


@pytest.mark.parametrize("body", [b"{broken", b"[1, 2]"])
def test_identify_refuses_a_body_that_is_not_a_json_object(http, emulator, body):
    response = http.put(f"{emulator.url}/api/v1/customers/a1", data=body, auth=TRACK_AUTH, timeout=TIMEOUT)

    assert response.status_code == 400


def test_batch_applies_identify_operations(http, emulator):
    cio_id = control(http, emulator, "GET", "customers/b2")["cio_id"]
    operations = [
        identify({"id": "a1"}, plan="gold"),
        identify({"email": "BOB@example.com"}, plan="silver"),
        identify({"cio_id": cio_id}, city="Oslo"),
        identify({"email": "carol@example.com"}, first_name="Carol"),
        identify({"email": "ghost@example.com"}, first_name="Ghost", _update=True),
    ]

    response = track_batch(http, emulator, operations)

    assert (response.status_code, response.json()) == (200, {})
    assert control(http, emulator, "GET", "customers/a1")["attributes"]["plan"] == "gold"
    bob = control(http, emulator, "GET", "customers/b2")["attributes"]
    assert bob == {"first_name": "Bob", "plan": "silver", "city": "Oslo"}
    assert control(http, emulator, "GET", "customers/carol@example.com")["attributes"] == {"first_name": "Carol"}
    assert http.get(f"{emulator.url}/_emulator/customers/ghost@example.com", timeout=TIMEOUT).status_code == 404


def test_batch_reports_invalid_operations_by_index_and_applies_the_rest(http, emulator):
    operations = [
        identify({"id": "a1", "email": "ann@example.com"}, plan="x"),
        identify({"id": "a1"}, plan="kept"),
        {**identify({"id": "a1"}), "action": "page"},
        "not an object",
        {**identify({"id": "a1"}), "type": "object"},
        identify({"phone": "+4712345678"}),
        identify({"id": "a1"}, blob="x" * (33 * 1024)),
    ]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [error["batch_index"] for error in errors] == [0, 2, 3, 4, 5, 6]
    assert all(set(error) == {"batch_index", "reason", "field", "message"} for error in errors)
    assert [error["field"] for error in errors[:2]] == ["identifiers", "action"]
    assert errors[-1]["reason"] == "too_large"
    assert control(http, emulator, "GET", "customers/a1")["attributes"]["plan"] == "kept"


def test_reject_identifiers_fault_refuses_those_batch_operations_only(http, emulator):
    faults = {"reject_identifiers": ["b2", "Ann@Example.com"]}
    assert http.post(f"{emulator.url}/_emulator/faults", json=faults, timeout=TIMEOUT).ok
    operations = [
        identify({"id": "a1"}, plan="gold"),
        identify({"id": "b2"}, plan="silver"),
        identify({"email": "Ann@Example.com"}, plan="bronze"),
    ]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 207
    assert [error["batch_index"] for error in response.json()["errors"]] == [1, 2]
    assert control(http, emulator, "GET", "customers/a1")["attributes"]["plan"] == "gold"
    assert "plan" not in control(http, emulator, "GET", "customers/b2")["attributes"]
    assert (
        http.post(f"{emulator.url}/_emulator/faults", json={"reject_identifiers": "b2"}, timeout=TIMEOUT).status_code
        == 400
    )


def test_batch_refuses_a_body_over_500_kb(http, emulator):
    operations = [identify({"id": f"p{n}"}, filler="x" * 1000) for n in range(520)]

    response = track_batch(http, emulator, operations)

    assert response.status_code == 413
    assert control(http, emulator, "GET", "status")["customers"] == 3
    # The refused body was read to its end, so the kept-alive connection still works.
    assert track_put(http, emulator, "a1", {"plan": "after"}).status_code == 200


@pytest.mark.parametrize("body", [b'{"ops": []}', b"{broken"])
def test_batch_refuses_a_body_without_a_batch_list(http, emulator, body):
    response = http.post(f"{emulator.url}/api/v2/batch", data=body, auth=TRACK_AUTH, timeout=TIMEOUT)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "batch"


# ---- concurrency


def test_concurrent_requests_are_all_logged(emulator):
    def identify_ten(thread_number):
        with requests.Session() as session:
            return [track_put(session, emulator, f"t{thread_number}", {"n": n}).status_code for n in range(10)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = [status for result in pool.map(identify_ten, range(20)) for status in result]

    assert statuses == [200] * 200
    assert len(emulator.requests()) == 200
    assert emulator.state.status()["customers"] == 3 + 20
    assert emulator.state.customer("t7")["attributes"] == {"n": 9}
