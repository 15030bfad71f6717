"""The emulator's own tests (test_emulator_*.py) exercise it over real HTTP on loopback, as the client and the
benchmarks use it: one server per test module, reset to FIXTURE before each test, and helpers that call its App API,
its Track API and its /_emulator control endpoints.

test_client.py and test_emulator_segment_members.py define an `emulator` of their own, which takes precedence there.
"""

import pytest
import requests

from cio_emulator import EmulatorServer

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


def event(identifiers, name, **fields):
    """A v2 batch person event entry; `fields` are id, timestamp, attributes (or anything else, to test refusals)."""
    return {"type": "person", "identifiers": identifiers, "action": "event", "name": name, **fields}
