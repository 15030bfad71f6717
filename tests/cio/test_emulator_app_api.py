"""The Customer.io emulator's App API reads: segments, a customer's attributes and segments by id, email or cio_id,
attributes in batches, and segment membership page by page, with the errors Customer.io gives for bad requests."""

import pytest

from .conftest import APP_AUTH, TIMEOUT, app_get, control


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
