"""The Customer.io emulator's /_emulator control endpoints, for loopback clients only: fault plans (failures,
timeouts, latency) and what they change, the request log, reset, and loading customers and segments."""

import time

import pytest
import requests

from cio_emulator.handler import _is_loopback

from .conftest import APP_AUTH, TIMEOUT, app_get, control, identify, track_batch, track_put

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
