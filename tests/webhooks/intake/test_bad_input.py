"""Bad input never costs a 500 or a traceback: NUL characters, lone surrogates, deep nesting, forwarded-address
garbage, Customer.io attributes holding a NUL — on SQLite and PostgreSQL alike. Error pages never show the key."""

import json
import logging

import pytest

from users.models import ActivityLog, User
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_tracebacks(caplog):
    caplog.set_level(logging.INFO)
    yield
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


def post(client, url, body, content_type="application/json", **extra):
    return client.generic("POST", url, body, content_type=content_type, **extra)


@pytest.mark.parametrize(
    "url",
    ["/?wpf_action=%00&access_key=x", "/?wpf_action=test&access_key=x&foo=%00", "/?wpf_action=te%00st&access_key=%00"],
)
def test_a_nul_in_the_query_string_without_the_key_is_refused_plainly(client, url, no_tracebacks):
    response = post(client, url, "{}")
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_access_key"


def test_a_nul_in_the_query_string_with_the_key_is_cleaned(client, access_key, emulator, no_tracebacks):
    response = post(client, f"/?wpf_action=test&access_key={access_key}&note=a%00b", "{}")
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().query == {"wpf_action": "test", "note": "ab"}


@pytest.mark.parametrize("with_key", [True, False])
def test_sixty_thousand_open_brackets_get_400_or_403(client, access_key, with_key, no_tracebacks):
    key = access_key if with_key else "wrong"
    response = post(client, f"/?wpf_action=update_tags&access_key={key}", "[" * 60_000)
    assert response.status_code == (400 if with_key else 403)
    if with_key:
        assert response.json() == {
            "error": "invalid_payload",
            "detail": "The JSON body is nested deeper than 32 levels.",
        }


@pytest.mark.parametrize("depth", [33, 490, 900])
def test_deep_but_valid_json_gets_400(client, access_key, depth, no_tracebacks):
    body = '{"email": "ann@example.com", "x": ' + "[" * depth + "]" * depth + "}"
    response = post(client, f"/?wpf_action=update_tags&access_key={access_key}", body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-2.5E400"])
def test_numbers_json_does_not_have_get_400(client, access_key, number, no_tracebacks):
    body = '{"email": "ann@example.com", "cio_id": ' + number + "}"
    response = post(client, f"/?wpf_action=update_tags&access_key={access_key}", body)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_payload", "detail": "The body is not valid JSON."}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.body) == ("invalid", None)  # a body that could not be read is not stored


def test_a_nul_and_a_lone_surrogate_in_a_json_body_are_cleaned(client, access_key, emulator, no_tracebacks):
    body = (
        '{"email": "ann@example.com", "note\\u0000": "x\\u0000y", "odd": "\\ud800",'
        ' "attributes": {"first_name": "A\\u0000nn", "last_name": "Sm\\udfffith"}}'
    )
    response = post(client, f"/?wpf_action=add&access_key={access_key}", body)
    assert response.status_code == 200, response.content
    user = User.objects.get()
    assert (user.first_name, user.last_name) == ("Ann", "Sm\ufffdith")
    stored = WebhookDelivery.objects.get().body
    assert stored["note"] == "xy" and stored["odd"] == "\ufffd"


def test_a_nul_in_a_form_body_is_cleaned(client, access_key, emulator, no_tracebacks):
    url = f"/?wpf_action=update_tags&access_key={access_key}"
    response = post(client, url, "email=ann%40example.com&x=%00", "application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().body["x"] == ""


def test_a_nul_in_the_contact_is_not_a_valid_email(client, access_key, emulator, no_tracebacks):
    response = post(client, f"/?wpf_action=update_tags&access_key={access_key}", '{"email": "\\u0000"}')
    assert response.status_code == 400
    assert response.json()["error"] == "no_contact"


@pytest.mark.parametrize(
    "forwarded",
    ["fe80::1%" + "x" * 300, "fe80::1%eth0", "not-an-address", "1.2.3.4:5678", "\x00", ", , ,", "1.2.3.4, " * 500],
)
def test_forwarded_address_garbage_from_a_trusted_proxy_never_fails(client, access_key, settings, forwarded):
    settings.TRUSTED_PROXIES = ["10.0.0.9"]
    response = post(
        client,
        f"/?wpf_action=test&access_key={access_key}",
        "{}",
        REMOTE_ADDR="10.0.0.9",
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().remote_ip in ("10.0.0.9", "1.2.3.4")


def test_a_customerio_attribute_holding_a_nul_is_cleaned(client, access_key, emulator, no_tracebacks):
    emulator.add_customer(
        email="nul@example.com", attributes={"first_name": "Nu\x00ll", "plan": "go\x00ld"}, segments=[1]
    )
    from settings_app.models import FieldMapping

    FieldMapping.objects.create(cio_attribute="plan", user_field="meta.plan")
    response = post(client, f"/?wpf_action=add&access_key={access_key}", '{"email": "nul@example.com"}')
    assert response.status_code == 200, response.content
    user = User.objects.get(email="nul@example.com")
    assert user.first_name == "Null" and user.meta["plan"] == "gold"
    assert "\x00" not in json.dumps(list(ActivityLog.objects.values("message", "context")))


def test_options_does_not_describe_the_endpoint(client):
    response = client.options("/?wpf_action=add")
    assert response.status_code == 204
    assert response.content == b""
    assert "POST" in response["Allow"]
    response = client.options("/webhooks/customerio")
    assert response.status_code == 204 and response.content == b""


@pytest.fixture
def failing_view(monkeypatch, client):
    import webhooks.intake.views

    def boom(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhooks.intake.views.deliveries, "record_outcome", boom)
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize("debug", [True, False])
def test_an_unexpected_failure_is_a_json_500_without_the_key_even_with_debug_on(
    failing_view, access_key, settings, emulator, debug, caplog, json_log
):
    """No HTML error page ever reaches Customer.io (the debug page neither); the traceback goes to the log, scrubbed."""
    settings.DEBUG = debug
    for url, headers in [
        (f"/?wpf_action=update_tags&access_key={access_key}", {}),
        ("/?wpf_action=update_tags", {"Authorization": f"Bearer {access_key}"}),
        ("/?wpf_action=update_tags", {"X-Access-Key": access_key}),
    ]:
        response = failing_view.post(
            url, '{"email": "ann@example.com"}', content_type="application/json", headers=headers
        )
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"error": "internal_error", "detail": "The site failed to process this webhook."}
    assert "the database went away" in caplog.text
    assert access_key not in caplog.text
    # LOG_FORMAT=json: the same three reports, each with its traceback and request id, and no key.
    reports = [line for line in json_log.lines() if line["message"] == "Internal Server Error: /"]
    assert len(reports) == 3 and all("the database went away" in line["exc_info"] for line in reports)
    assert all(line["request_id"] for line in reports)
    assert access_key not in json_log.text


def test_the_debug_404_page_never_shows_the_key(client, access_key, settings):
    settings.DEBUG = True
    response = client.get(f"/no-such-page/?wpf_action=test&access_key={access_key}")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Request URL" in page and access_key not in page


def test_a_method_the_endpoint_does_not_take_gets_a_json_405(client):
    response = client.generic("TRACE", "/webhooks/customerio?wpf_action=test")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed" and "POST" in response["Allow"]
