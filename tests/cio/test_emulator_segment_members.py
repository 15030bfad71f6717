"""The emulator's Track API add_customers / remove_customers, as Customer.io documents them: manual segments only,
up to 1,000 ids a call, unknown emails and ids created on add."""

import pytest
import requests

from cio_emulator import EmulatorServer

APP_AUTH = {"Authorization": "Bearer emulator-app-key"}
TRACK_AUTH = ("emulator-site", "emulator-track-key")
FIXTURE = {
    "segments": [{"id": 1, "name": "VIP", "type": "manual"}, {"id": 2, "name": "Active", "type": "dynamic"}],
    "customers": [{"email": "ann@example.com", "cio_id": "c-ann", "segments": [2]}],
}


@pytest.fixture(scope="module")
def emulator():
    with EmulatorServer(port=0, rate_limit=0) as server:
        yield server


@pytest.fixture
def url(emulator):
    assert requests.post(f"{emulator.url}/_emulator/reset", json={"fixture": FIXTURE}, timeout=5).ok
    return emulator.url


def change(url, verb, ids, id_type="email", segment=1):
    return requests.post(
        f"{url}/api/v1/segments/{segment}/{verb}",
        params={"id_type": id_type},
        json={"ids": ids},
        auth=TRACK_AUTH,
        timeout=5,
    )


def segments_of(url, email):
    response = requests.get(f"{url}/v1/customers/{email}/segments", params={"id_type": "email"}, headers=APP_AUTH)
    return [segment["id"] for segment in response.json()["segments"]] if response.ok else None


def test_add_and_remove_by_cio_id_and_email(url):
    assert change(url, "add_customers", ["c-ann"], "cio_id").status_code == 200
    assert segments_of(url, "ann@example.com") == [1, 2]
    assert change(url, "remove_customers", ["ann@example.com"]).status_code == 200
    assert segments_of(url, "ann@example.com") == [2]


def test_adding_an_unknown_email_creates_the_person_but_an_unknown_cio_id_is_ignored(url):
    assert change(url, "add_customers", ["new@example.com"]).status_code == 200
    assert segments_of(url, "new@example.com") == [1]
    assert change(url, "add_customers", ["c-nobody"], "cio_id").status_code == 200
    assert requests.get(f"{url}/_emulator/status", timeout=5).json()["customers"] == 2


def test_data_driven_segments_unknown_segments_and_long_lists_are_refused(url):
    refused = change(url, "add_customers", ["ann@example.com"], segment=2)
    assert refused.status_code == 400 and "data-driven" in refused.text
    assert change(url, "add_customers", ["ann@example.com"], segment=9).status_code == 404
    too_many = change(url, "add_customers", [f"p{n}@example.com" for n in range(1001)])
    assert too_many.status_code == 400 and "1000" in too_many.text
    assert change(url, "add_customers", ["x"], "phone").status_code == 400
    assert requests.post(f"{url}/api/v1/segments/1/add_customers", json={"ids": []}, timeout=5).status_code == 401
