"""The webhook as a DRF view: its classes sit in DRF's slots, and what callers see through them — Basic auth, the
duplicated parameter, IDN twins, the browser page, the log bounds."""

import base64
import json
import logging
import urllib.parse

import pytest
import requests
from django.urls import resolve
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.serializers import Serializer
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from settings_app import access_keys
from settings_app.models import WebhookSettings
from users.models import ActivityLog, User
from webhooks.intake import refusals
from webhooks.intake.views import CustomerIOWebhookView
from webhooks.models import RefusedRequestWindow, WebhookDelivery


def test_the_webhook_is_a_drf_view_with_each_concern_in_drf_s_slot(db):
    for path in ("/webhooks/customerio/", "/webhooks/customerio"):
        assert resolve(path).func.cls is CustomerIOWebhookView
    view = CustomerIOWebhookView()
    assert isinstance(view, APIView)
    # What DRF actually uses for a request (the view shares one instance of each stateless class).
    assert all(isinstance(item, BaseAuthentication) for item in view.get_authenticators())
    assert all(isinstance(item, BasePermission) for item in view.get_permissions())
    assert all(isinstance(item, BaseThrottle) for item in view.get_throttles())
    assert all(isinstance(item, BaseParser) for item in view.get_parsers())
    assert isinstance(view.get_content_negotiator(), BaseContentNegotiation)
    assert view.get_throttles()[0] is not view.get_throttles()[0]  # it holds a request's refusal: one per request
    from webhooks.intake.serializers import WebhookRequestSerializer

    assert issubclass(WebhookRequestSerializer, Serializer)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_key_as_the_password_of_basic_auth(client, access_key):
    for user in ("customerio", "", "anything at all"):
        response = client.post(
            "/?wpf_action=test", "{}", content_type="application/json", HTTP_AUTHORIZATION=basic(user, access_key)
        )
        assert response.status_code == 200, response.content
    refused = client.post(
        "/?wpf_action=test", "{}", content_type="application/json", HTTP_AUTHORIZATION=basic(access_key, "wrong")
    )
    assert (refused.status_code, refused.json()) == (
        403,
        {"error": "invalid_access_key", "detail": "Invalid Access Key"},
    )
    garbage = client.post("/?wpf_action=test", "{}", content_type="application/json", HTTP_AUTHORIZATION="Basic %%%")
    assert garbage.status_code == 403
    assert "WWW-Authenticate" not in refused  # 403, never a browser's login prompt


def test_basic_auth_for_a_proxy_beside_the_key_in_the_query(client, access_key):
    """`https://user:password@host/?access_key=KEY`: Basic auth meant for a proxy in front, the key in the URL."""
    response = client.post(
        f"/?wpf_action=test&access_key={access_key}",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=basic("proxy-user", "proxy-password"),
    )
    assert response.status_code == 200


def test_a_url_with_user_and_key_reaches_the_site_as_basic_auth(live_server, access_key):
    """What Customer.io does with `https://user:KEY@host/…`: requests (like Customer.io) sends it as Basic auth."""
    host = live_server.url.removeprefix("http://")
    url = f"http://customerio:{urllib.parse.quote(access_key)}@{host}/?wpf_action=test"
    response = requests.post(url, json={}, timeout=10)
    assert (response.status_code, response.json()["status"]) == (200, "ok")
    assert WebhookDelivery.objects.get().access_key_fingerprint == access_keys.fingerprint(access_key)


@pytest.mark.parametrize("name", ["wpf_action", "email", "access_key", "async"])
def test_a_parameter_named_twice_is_refused_naming_it(client, access_key, name):
    first, second = {"wpf_action": ("test", "add"), "email": ("a@example.com", "b@example.com")}.get(
        name, (access_key, access_key) if name == "access_key" else ("true", "false")
    )
    query = f"{name}={first}&{name}={second}"
    if name != "wpf_action":
        query += "&wpf_action=test"
    if name != "access_key":
        query += f"&access_key={access_key}"
    response = client.post(f"/?{query}", "{}", content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "error": "duplicate_parameter",
        "detail": f"The query string names '{name}' more than once: send it once.",
    }
    assert User.objects.count() == 0


def test_a_duplicated_parameter_with_the_key_is_recorded_and_without_it_only_refused(client, access_key):
    client.post(f"/?wpf_action=test&wpf_action=add&access_key={access_key}", "{}", content_type="application/json")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.http_status, delivery.result["error"]) == ("invalid", 400, "duplicate_parameter")
    assert access_key not in json.dumps(delivery.query)
    wrong = client.post("/?wpf_action=test&wpf_action=add&access_key=wrong", "{}", content_type="application/json")
    assert wrong.status_code == 403
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(
    ("on_the_site", "from_customerio"),
    [("ann@xn--bcher-kva.example", "ann@bücher.example"), ("ann@BÜCHER.example", "ann@xn--bcher-kva.example")],
)
def test_idn_twins_are_one_user(client, access_key, emulator, on_the_site, from_customerio):
    """`ann@bücher.example` and `ann@xn--bcher-kva.example` are one mailbox: a webhook naming either spelling finds
    the user who has the other, and never makes a second one."""
    user = User.objects.create_user(username="ann-idn", email=on_the_site, password="x")
    emulator.add_customer(email=from_customerio, attributes={"first_name": "Ann"}, segments=[1])
    for action in ("add", "update_tags"):
        response = client.post(
            f"/?wpf_action={action}&access_key={access_key}",
            {"email": from_customerio},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "ok" and response.json().get("created", False) is False
    assert list(User.objects.values_list("pk", flat=True)) == [user.pk]
    assert list(user.tags.values_list("name", flat=True)) == ["VIP"]


def test_a_browser_opening_the_test_url_sees_connected_and_never_the_key(client, access_key, settings):
    settings.SITE_BASE_URL = "https://members.example.com"
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = client.get(f"/?wpf_action=test&access_key={access_key}", HTTP_ACCEPT=browser)
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert "Connected" in text and "https://members.example.com" in text and "the current key" in text
    assert "update_tags" in text  # the next step
    assert page["X-Frame-Options"] == "DENY"
    assert access_key not in text
    # Customer.io, curl and every other non-HTML client keep getting JSON.
    for accept in ("*/*", "application/json", "", "text/plain"):
        answer = client.get(f"/?wpf_action=test&access_key={access_key}", HTTP_ACCEPT=accept)
        assert answer["Content-Type"] == "application/json"
        assert answer.json() == {"status": "ok", "action": "test"}


def test_the_browser_page_names_a_previous_key_and_a_refusal(client, access_key):
    old_until = access_keys.rotate(WebhookSettings.load())[1]
    browser = "text/html,*/*;q=0.8"
    page = client.get(f"/?wpf_action=test&access_key={access_key}", HTTP_ACCEPT=browser).content.decode()
    assert "Connected" in page and "previous, valid until" in page
    assert access_key not in page and WebhookSettings.load().access_key not in page
    assert f"{old_until:%Y}" in page
    refused = client.get("/?wpf_action=test&access_key=wrong-key", HTTP_ACCEPT=browser)
    assert refused.status_code == 403 and "Not connected" in refused.content.decode()
    # The admin hears once that a journey still uses the previous key (not once per webhook).
    client.post(f"/?wpf_action=test&access_key={access_key}", "{}", content_type="application/json")
    notices = ActivityLog.objects.filter(message__contains="previous, valid until")
    assert notices.count() == 1 and access_key not in notices.get().message


@pytest.mark.parametrize("path", ["/", "/webhooks/customerio/"])
def test_malformed_requests_without_the_key_get_json_and_write_no_error_log(client, db, path, caplog):
    """Raised before the key is checked — a method the endpoint does not take, a query string with more
    parameters than Django reads — and never an HTML page, a traceback, or a log line per request."""
    many = "&".join(f"p{number}=1" for number in range(1100))
    answers = [
        client.generic("TRACE", f"{path}?access_key=a&access_key=b"),
        client.post(f"{path}?wpf_action=test&{many}", "{}", content_type="application/json"),
        client.post(f"{path}?wpf_action=test&access_key=wrong", "{}", content_type="application/json"),
    ]
    assert [(a.status_code, a["Content-Type"], a.json()["error"]) for a in answers] == [
        (405, "application/json", "method_not_allowed"),
        (400, "application/json", "bad_request"),
        (403, "application/json", "invalid_access_key"),
    ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("django")] == []
    assert not any(r.exc_info for r in caplog.records)
    refusals.flush()
    assert sum(window.count for window in RefusedRequestWindow.objects.all()) == 3


def test_headers_of_the_answers(client, access_key):
    post = client.post(f"/?wpf_action=test&access_key={access_key}", "{}", content_type="application/json")
    assert "Vary" not in post and "Allow" not in post and post["X-Frame-Options"] == "DENY"
    page = client.get(f"/?wpf_action=test&access_key={access_key}", HTTP_ACCEPT="text/html")
    assert page["Vary"] == "Accept" and page["Cache-Control"] == "no-store"


def test_an_unknown_accept_never_gets_406(client, access_key):
    response = client.post(
        f"/?wpf_action=test&access_key={access_key}", "{}", content_type="application/json", HTTP_ACCEPT="image/png"
    )
    assert (response.status_code, response["Content-Type"]) == (200, "application/json")


def test_a_multipart_body_is_read(client, access_key, emulator):
    response = client.post(
        f"/?wpf_action=update_tags&access_key={access_key}", {"email": "nobody@example.com"}
    )  # the test client sends multipart/form-data
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "skipped"


def test_other_drf_exceptions_answer_in_the_project_shape_too():
    """The exception handler is the project's: another DRF view's 401 (the members API's) or throttle carries an
    error code beside its detail, with its own status and headers."""
    from rest_framework.exceptions import Throttled

    from users.access.gates import NotLoggedIn
    from webhooks.intake.exceptions import handle_exception

    response = handle_exception(NotLoggedIn(), {})
    assert (response.status_code, response.data) == (
        401,
        {"error": "not_authenticated", "detail": "Log in to use this."},
    )
    throttled = handle_exception(Throttled(wait=2.5), {})
    assert (throttled.status_code, throttled.data["error"], throttled["Retry-After"]) == (429, "throttled", "3")


@pytest.mark.slow
def test_fifty_thousand_refused_requests_write_under_50_kb_of_log(client, db, monkeypatch, settings):
    """At most one line per address per minute, with a count — never one per refused request."""
    settings.WEBHOOK_REFUSED_PER_MINUTE = 1000
    now = [1_800_000_000.0]
    monkeypatch.setattr(refusals, "clock", lambda: now[0])
    written = []

    class Measure(logging.Handler):
        def emit(self, record):
            written.append(self.format(record))

    handler = Measure(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("django"), logging.getLogger("django.request")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        for number in range(50_000):
            now[0] += 0.006  # five minutes in all
            address = f"203.0.113.{number % 4}"
            response = client.post(
                "/?wpf_action=test&access_key=wrong", "{}", content_type="application/json", REMOTE_ADDR=address
            )
            assert response.status_code in (403, 429)
        refusals.flush()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    size = sum(len(line) + 1 for line in written)
    assert size < 50_000, written[:5]
    assert any("Refused" in line and "203.0.113.1" in line for line in written)
    assert len(written) <= 4 * 6 + 4  # a line per address per minute, and the activity log's one per address per hour


def test_a_bad_host_is_one_warning_line_without_a_traceback(client, access_key):
    logger = logging.getLogger("django.security.DisallowedHost")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        response = client.post(
            f"/?wpf_action=test&access_key={access_key}", "{}", content_type="application/json", HTTP_HOST="evil.test"
        )
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 400
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None
    assert "\n" not in records[0].getMessage()


def test_refusals_from_many_addresses_name_the_busiest_and_sum_up_the_rest(client, db, caplog):
    caplog.set_level(logging.WARNING, logger="webhooks.intake.refusals")
    for number in range(40):
        for _ in range(1 + (number == 7)):
            client.post(
                "/?wpf_action=test&access_key=wrong",
                "{}",
                content_type="application/json",
                REMOTE_ADDR=f"198.51.100.{number}",
            )
    refusals.flush()
    lines = [record.getMessage() for record in caplog.records if record.name == "webhooks.intake.refusals"]
    assert len(lines) == refusals.LOGGED_ADDRESSES + 1
    assert "from 198.51.100.7 " in lines[0] and lines[0].startswith("Refused 2 webhook requests")
    assert lines[-1].startswith(
        f"Refused {40 - refusals.LOGGED_ADDRESSES} more webhook requests from 30 more addresses"
    )
