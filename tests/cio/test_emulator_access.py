"""Whom the Customer.io emulator answers: each API takes its own credentials only, and the App API's rate limit refuses
the request over the limit (exactly, even under a concurrent burst) while the Track API is not limited."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import APP_AUTH, TIMEOUT, TRACK_AUTH, app_get, control, track_put

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


# ---- under a concurrent burst


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
