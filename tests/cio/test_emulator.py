"""The Customer.io emulator, exercised over real HTTP on loopback as the client and the benchmarks use it."""

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from cio_emulator import EmulatorServer
from cio_emulator.handler import _is_loopback

ROOT = Path(__file__).resolve().parents[2]
APP_AUTH = {"Authorization": "Bearer emulator-app-key"}
TRACK_AUTH = ("emulator-site", "emulator-track-key")
TIMEOUT = 5

FIXTURE = {
    "segments": [
        {"id": 1, "name": "VIP", "type": "manual", "description": "Looked after personally"},
        {"id": 2, "name": "Newsletter", "type": "dynamic"},
    ],
    "customers": [
        {
            "email": "Ann@Example.com",
            "id": "a1",
            "attributes": {"first_name": "Ann", "age": 42, "vip": True, "score": 1.5},
            "segments": [1, 2],
        },
        {"email": "bob@example.com", "id": "b2", "attributes": {"first_name": "Bob"}, "segments": [2]},
        {"email": "a+b@x.io", "attributes": {"first_name": "Plus"}, "segments": [1]},
    ],
}


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(port=0, rate_limit=0) as emulator:
        yield emulator


@pytest.fixture
def emulator(server):
    """The module's server, reset to FIXTURE with no rate limit, latency or faults."""
    settings = {"rate_limit": 0, "retry_after_header": True, "latency_ms": 0}
    assert requests.post(f"{server.url}/_emulator/settings", json=settings, timeout=TIMEOUT).status_code == 200
    assert requests.post(f"{server.url}/_emulator/reset", json={"fixture": FIXTURE}, timeout=TIMEOUT).ok
    return server


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def app_get(http, emulator, path, **params):
    return http.get(f"{emulator.url}{path}", params=params, headers=APP_AUTH, timeout=TIMEOUT)


def track_put(http, emulator, identifier, body):
    return http.put(f"{emulator.url}/api/v1/customers/{identifier}", json=body, auth=TRACK_AUTH, timeout=TIMEOUT)


def track_batch(http, emulator, operations):
    return http.post(f"{emulator.url}/api/v2/batch", json={"batch": operations}, auth=TRACK_AUTH, timeout=TIMEOUT)


def control(http, emulator, method, name, body=None):
    response = http.request(method, f"{emulator.url}/_emulator/{name}", json=body, timeout=TIMEOUT)
    assert response.ok, response.text
    return response.json()


def identify(identifiers, **attributes):
    return {"type": "person", "identifiers": identifiers, "action": "identify", "attributes": attributes}


# ---- authentication


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "emulator-app-key"}])
def test_app_api_refuses_a_missing_or_wrong_key(http, emulator, headers):
    response = http.get(f"{emulator.url}/v1/segments", headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.json() == {"meta": {"error": "Unauthorized request"}}


@pytest.mark.parametrize("auth", [None, ("emulator-site", "wrong"), ("other-site", "emulator-track-key")])
def test_track_api_refuses_missing_or_wrong_credentials(http, emulator, auth):
    response = http.put(f"{emulator.url}/api/v1/customers/a1", json={}, auth=auth, timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.json() == {"meta": {"error": "Unauthorized request"}}


def test_each_api_takes_only_its_own_credentials(http, emulator):
    assert http.get(f"{emulator.url}/v1/segments", auth=TRACK_AUTH, timeout=TIMEOUT).status_code == 401
    put = http.put(f"{emulator.url}/api/v1/customers/a1", json={}, headers=APP_AUTH, timeout=TIMEOUT)
    assert put.status_code == 401


# ---- App API


def test_segments_list(http, emulator):
    response = app_get(http, emulator, "/v1/segments")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    vip, newsletter = response.json()["segments"]
    assert vip == {
        "id": 1,
        "deduplicate_id": vip["deduplicate_id"],
        "name": "VIP",
        "description": "Looked after personally",
        "state": "finished",
        "progress": None,
        "type": "manual",
        "tags": None,
    }
    assert vip["deduplicate_id"].startswith("1:")
    assert (newsletter["id"], newsletter["type"], newsletter["description"]) == (2, "dynamic", "")


def test_customer_attributes_by_id_are_strings(http, emulator):
    response = app_get(http, emulator, "/v1/customers/a1/attributes")

    assert response.status_code == 200
    customer = response.json()["customer"]
    cio_id = customer["identifiers"]["cio_id"]
    assert len(cio_id) == 20
    assert customer["id"] == "a1"
    assert customer["identifiers"] == {"email": "Ann@Example.com", "id": "a1", "cio_id": cio_id}
    assert customer["attributes"] == {
        "first_name": "Ann",
        "age": "42",
        "vip": "true",
        "score": "1.5",
        "email": "Ann@Example.com",
        "id": "a1",
        "cio_id": cio_id,
        "_created_in_customerio_at": customer["attributes"]["_created_in_customerio_at"],
    }
    assert {"cio_id", "email", "id", "first_name"} <= set(customer["timestamps"])
    assert all(isinstance(value, int) for value in customer["timestamps"].values())
    assert customer["unsubscribed"] is False
    assert customer["devices"] == []


def test_email_lookup_ignores_case(http, emulator):
    response = app_get(http, emulator, "/v1/customers/aNN@eXample.COM/attributes", id_type="email")

    assert response.status_code == 200
    assert response.json()["customer"]["id"] == "a1"


def test_url_encoded_identifier_is_decoded(http, emulator):
    response = app_get(http, emulator, "/v1/customers/a%2Bb%40x.io/attributes", id_type="email")

    assert response.status_code == 200
    customer = response.json()["customer"]
    assert customer["identifiers"]["email"] == "a+b@x.io"
    assert customer["id"] is None
    assert "id" not in customer["attributes"]


def test_cio_id_lookup(http, emulator):
    cio_id = control(http, emulator, "GET", "customers/b2")["cio_id"]

    response = app_get(http, emulator, f"/v1/customers/{cio_id}/attributes", id_type="cio_id")

    assert response.json()["customer"]["id"] == "b2"


@pytest.mark.parametrize("endpoint", ["attributes", "segments"])
def test_unknown_customer_is_404(http, emulator, endpoint):
    response = app_get(http, emulator, f"/v1/customers/nobody@example.com/{endpoint}", id_type="email")

    assert response.status_code == 404
    assert response.json() == {"errors": [{"detail": "Customer not found", "status": "404"}]}


def test_unsupported_id_type_is_400(http, emulator):
    assert app_get(http, emulator, "/v1/customers/a1/attributes", id_type="phone").status_code == 400


def test_customer_segments(http, emulator):
    response = app_get(http, emulator, "/v1/customers/ann@example.com/segments", id_type="email")

    assert response.status_code == 200
    segments = response.json()["segments"]
    assert [(s["id"], s["name"], s["description"]) for s in segments] == [
        (1, "VIP", "Looked after personally"),
        (2, "Newsletter", ""),
    ]


def test_customers_attributes_batch_omits_unknown_ids(http, emulator):
    response = http.post(
        f"{emulator.url}/v1/customers/attributes",
        params={"id_type": "email"},
        json={"ids": ["BOB@example.com", "nobody@example.com", "a+b@x.io"]},
        headers=APP_AUTH,
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    customers = response.json()["customers"]
    assert [entry["customer"]["identifiers"]["email"] for entry in customers] == ["bob@example.com", "a+b@x.io"]
    assert customers[0]["customer"]["attributes"]["first_name"] == "Bob"


@pytest.mark.parametrize(
    "body", [{"ids": [str(n) for n in range(101)]}, {"ids": "a1"}, {"wrong": []}, [1, 2], {"ids": [None]}]
)
def test_customers_attributes_batch_refuses_bad_bodies(http, emulator, body):
    response = http.post(f"{emulator.url}/v1/customers/attributes", json=body, headers=APP_AUTH, timeout=TIMEOUT)

    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"]


def test_customers_attributes_batch_refuses_invalid_json(http, emulator):
    response = http.post(
        f"{emulator.url}/v1/customers/attributes", data=b"{not json", headers=APP_AUTH, timeout=TIMEOUT
    )

    assert response.status_code == 400


def test_membership_pages_through_a_large_segment(http, emulator):
    members = [{"email": f"m{n}@example.com", "id": f"m{n}", "segments": [3]} for n in range(2500)]
    members.append({"id": "no-email", "segments": [3]})
    control(http, emulator, "POST", "load", {"segments": [{"id": 3, "name": "Big"}], "customers": members})

    pages, start = [], None
    for _ in range(10):  # bounded: 2501 members in pages of 1000 take three requests
        response = app_get(http, emulator, "/v1/segments/3/membership", limit=1000, start=start)
        assert response.status_code == 200
        pages.append(response.json())
        start = pages[-1]["next"]
        if not start:
            break

    assert [len(page["ids"]) for page in pages] == [1000, 1000, 501]
    identifiers = [entry for page in pages for entry in page["identifiers"]]
    assert [entry["id"] for entry in identifiers] == [f"m{n}" for n in range(2500)] + ["no-email"]
    assert identifiers[0]["email"] == "m0@example.com" and len(identifiers[0]["cio_id"]) == 20
    assert identifiers[-1]["email"] is None
    assert pages[0]["ids"][:2] == ["m0", "m1"]


def test_membership_ids_hold_an_empty_string_for_a_member_without_id(http, emulator):
    page = app_get(http, emulator, "/v1/segments/1/membership").json()

    assert page["ids"] == ["a1", ""]
    assert page["identifiers"][1]["email"] == "a+b@x.io"
    assert page["next"] == ""


def test_membership_refuses_bad_limits_cursors_and_segments(http, emulator):
    assert app_get(http, emulator, "/v1/segments/1/membership", limit=30001).status_code == 400
    assert app_get(http, emulator, "/v1/segments/1/membership", limit=0).status_code == 400
    assert app_get(http, emulator, "/v1/segments/1/membership", start="garbage!").status_code == 400
    assert app_get(http, emulator, "/v1/segments/1/membership", limit=30000).status_code == 200
    assert app_get(http, emulator, "/v1/segments/99/membership").status_code == 404


# ---- Track API


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
        {**identify({"id": "a1"}), "action": "event"},
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


# ---- rate limiting


def test_app_api_rate_limit_refuses_the_request_over_the_limit(http, emulator):
    control(http, emulator, "POST", "settings", {"rate_limit": 3})

    statuses = [app_get(http, emulator, "/v1/segments") for _ in range(4)]

    assert [response.status_code for response in statuses] == [200, 200, 200, 429]
    assert statuses[3].headers["Retry-After"] == "1"
    assert statuses[3].json() == {"meta": {"error": "rate limited"}}
    time.sleep(1.05)  # the window slides: a second later there is room again
    assert app_get(http, emulator, "/v1/segments").status_code == 200


def test_rate_limited_answer_can_omit_retry_after(http, emulator):
    control(http, emulator, "POST", "settings", {"rate_limit": 1, "retry_after_header": False})

    responses = [app_get(http, emulator, "/v1/segments") for _ in range(2)]

    assert responses[1].status_code == 429
    assert "Retry-After" not in responses[1].headers


def test_track_api_is_not_rate_limited(http, emulator):
    control(http, emulator, "POST", "settings", {"rate_limit": 1})

    assert {track_put(http, emulator, "a1", {"n": n}).status_code for n in range(10)} == {200}


def test_refused_requests_do_not_count_against_the_limit(http, emulator):
    control(http, emulator, "POST", "settings", {"rate_limit": 2})

    for _ in range(3):
        assert http.get(f"{emulator.url}/v1/segments", timeout=TIMEOUT).status_code == 401

    assert [app_get(http, emulator, "/v1/segments").status_code for _ in range(3)] == [200, 200, 429]


# ---- faults


def test_fault_restricted_to_track_puts_fails_only_those(http, emulator):
    control(
        http,
        emulator,
        "POST",
        "faults",
        {"fail_rate": 1.0, "fail_status": 503, "path_prefix": "/api/", "method": "PUT"},
    )

    assert [track_put(http, emulator, "a1", {"plan": "faulted"}).status_code for _ in range(5)] == [503] * 5
    assert track_batch(http, emulator, [identify({"id": "a1"}, city="Oslo")]).status_code == 200
    assert app_get(http, emulator, "/v1/segments").status_code == 200
    attributes = control(http, emulator, "GET", "customers/a1")["attributes"]
    assert attributes["city"] == "Oslo" and "plan" not in attributes  # a faulted request changes nothing
    assert [entry["status"] for entry in control(http, emulator, "GET", "requests?method=PUT")] == [503] * 5


def test_fault_with_status_429_behaves_like_the_rate_limiter(http, emulator):
    control(http, emulator, "POST", "faults", {"fail_rate": 1, "fail_status": 429})

    response = app_get(http, emulator, "/v1/segments")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


def test_cleared_faults_stop_failing(http, emulator):
    control(http, emulator, "POST", "faults", {"fail_rate": 1})
    assert app_get(http, emulator, "/v1/segments").status_code == 500

    assert control(http, emulator, "POST", "faults", {})["fail_rate"] == 0

    assert app_get(http, emulator, "/v1/segments").status_code == 200


def test_timeout_fault_leaves_the_client_waiting(http, emulator):
    control(http, emulator, "POST", "faults", {"timeout_rate": 1, "timeout_seconds": 0.5})

    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{emulator.url}/v1/segments", headers=APP_AUTH, timeout=0.2)

    assert control(http, emulator, "GET", "requests")[-1]["status"] is None


def test_fault_latency_and_global_latency_delay_answers(http, emulator):
    control(http, emulator, "POST", "settings", {"latency_ms": 100})
    control(http, emulator, "POST", "faults", {"latency_ms": 100, "path_prefix": "/v1/"})

    started = time.monotonic()
    assert app_get(http, emulator, "/v1/segments").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_invalid_fault_plan_is_refused(http, emulator):
    response = http.post(f"{emulator.url}/_emulator/faults", json={"fail_rate": 2}, timeout=TIMEOUT)

    assert response.status_code == 400
    assert "fail_rate" in response.json()["error"]


# ---- control endpoints


def test_request_log_records_api_requests_only(http, emulator):
    track_put(http, emulator, "a%2Bb%40x.io", {"plan": "pro"})
    app_get(http, emulator, "/v1/segments", limit="5")
    http.get(f"{emulator.url}/v1/segments", timeout=TIMEOUT)
    control(http, emulator, "GET", "status")

    log = control(http, emulator, "GET", "requests")

    assert [(entry["method"], entry["path"], entry["status"]) for entry in log] == [
        ("PUT", "/api/v1/customers/a+b@x.io", 200),
        ("GET", "/v1/segments", 200),
        ("GET", "/v1/segments", 401),
    ]
    assert log[0]["body"] == {"plan": "pro"} and log[0]["query"] == {}
    assert log[1]["query"] == {"limit": "5"} and log[1]["body"] is None
    assert all(abs(entry["time"] - time.time()) < 30 for entry in log)
    assert control(http, emulator, "GET", "requests?since=1&path_prefix=/v1/") == log[1:]


def test_clearing_the_request_log(http, emulator):
    app_get(http, emulator, "/v1/segments")

    assert control(http, emulator, "DELETE", "requests") == {"cleared": 1}
    assert control(http, emulator, "GET", "requests") == []


def test_reset_empties_everything_but_settings(http, emulator):
    control(http, emulator, "POST", "settings", {"latency_ms": 1})
    control(http, emulator, "POST", "faults", {"fail_rate": 1, "path_prefix": "/nothing"})
    app_get(http, emulator, "/v1/segments")

    assert control(http, emulator, "POST", "reset") == {"segments": 0, "customers": 0}

    assert control(http, emulator, "GET", "status") == {"segments": 0, "customers": 0, "requests": 0}
    assert control(http, emulator, "GET", "faults")["fail_rate"] == 0
    assert control(http, emulator, "GET", "settings")["latency_ms"] == 1


def test_customer_upsert_and_lookup(http, emulator):
    created = control(
        http,
        emulator,
        "POST",
        "customers",
        {"email": "zed@example.com", "id": "z9", "attributes": {"first_name": "Zed", "n": 1}, "segments": [2]},
    )
    assert created["attributes"] == {"first_name": "Zed", "n": 1}
    assert created["segments"] == [2] and created["unsubscribed"] is False

    updated = control(http, emulator, "POST", "customers", {"id": "z9", "segments": [1], "unsubscribed": True})

    assert updated["cio_id"] == created["cio_id"]
    assert updated["email"] == "zed@example.com" and updated["segments"] == [1]
    assert control(http, emulator, "GET", f"customers/cio_{created['cio_id']}") == updated
    customer = app_get(http, emulator, "/v1/customers/z9/attributes").json()["customer"]
    assert customer["unsubscribed"] is True


def test_customer_upsert_refuses_bad_input(http, emulator):
    def post(body):
        return http.post(f"{emulator.url}/_emulator/customers", json=body, timeout=TIMEOUT)

    assert post({"attributes": {}}).status_code == 400  # neither email nor id
    assert post({"id": "x", "segments": [42]}).status_code == 400  # unknown segment
    assert post({"id": "a1", "email": "bob@example.com"}).status_code == 409  # two different people
    assert http.get(f"{emulator.url}/_emulator/customers/nobody", timeout=TIMEOUT).status_code == 404


def test_segment_upsert(http, emulator):
    created = control(http, emulator, "POST", "segments", {"id": 7, "name": "Trial", "type": "dynamic"})
    assert (created["id"], created["name"], created["type"]) == (7, "Trial", "dynamic")

    control(http, emulator, "POST", "segments", {"id": 7, "description": "Free trials"})

    segments = app_get(http, emulator, "/v1/segments").json()["segments"]
    assert [(s["id"], s["name"], s["description"]) for s in segments][-1] == (7, "Trial", "Free trials")
    assert http.post(f"{emulator.url}/_emulator/segments", json={"id": 8}, timeout=TIMEOUT).status_code == 400


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.0.0.5", False)],
)
def test_control_endpoints_answer_loopback_clients_only(address, loopback):
    assert _is_loopback(address) is loopback


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


def test_rate_limit_is_exact_under_a_concurrent_burst(emulator):
    emulator.state.update_settings({"rate_limit": 5})
    ready = threading.Barrier(30)

    def one_request(_):
        ready.wait(timeout=TIMEOUT)
        return requests.get(f"{emulator.url}/v1/segments", headers=APP_AUTH, timeout=TIMEOUT).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(one_request, range(30)))

    assert time.monotonic() - started < 0.9  # the burst fits in one window, so exactly `rate_limit` get through
    assert (statuses.count(200), statuses.count(429)) == (5, 25)


# ---- the management command


@pytest.mark.slow
def test_management_command_serves_the_demo_fixture():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings", "ENV_FILE": os.devnull}
    command = [sys.executable, "manage.py", "cio_emulator", "--port", "0", "--fixture", "cio_emulator/demo.json"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line + process.stderr.read()
        url = line.removeprefix("listening on ")

        wrong = requests.get(f"{url}/v1/segments", headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT)
        right = requests.get(f"{url}/v1/segments", headers=APP_AUTH, timeout=TIMEOUT)

        assert wrong.status_code == 401
        assert right.status_code == 200
        assert [s["name"] for s in right.json()["segments"]] == [
            "VIP",
            "Newsletter",
            "Active customers",
            "Trial",
            "Payment failed",
            "Started the course",
        ]
    finally:
        process.terminate()
        returncode = process.wait(timeout=10)
        stderr = process.stderr.read()
    assert returncode == 0
    assert "Traceback" not in stderr
