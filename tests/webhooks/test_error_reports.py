"""Sentry error reports (SENTRY_DSN): what would be sent, captured by a local transport, holds no access key, password,
API key, set-password link or login link, wherever the failing request and code had them."""

import json
import logging

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from settings_app import freshness
from settings_app.models import WebhookSettings
from webhooks import error_reports
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

# Built here, so that no source line the event quotes contains them.
KEY = "Canary" + "AccessKey" + "7Qx"
OLD_KEY = "Canary" + "OldKey" + "55Zz"
PASSWORD = "Canary" + "Passw0rd" + "-91"
API_KEY = "Canary" + "AppApiKey" + "-3"
RESET_TOKEN = "cabc12-" + "0123456789abcdef" + "0123"
CANARIES = (KEY, OLD_KEY, PASSWORD, API_KEY, RESET_TOKEN)


class CapturingTransport(Transport):
    """What the SDK would send, kept here: each envelope, serialized as it would go over the wire."""

    sent: list[bytes] = []

    def capture_envelope(self, envelope):
        CapturingTransport.sent.append(envelope.serialize())

    @classmethod
    def events(cls) -> list[dict]:
        found = []
        for payload in cls.sent:
            for line in payload.splitlines():
                item = json.loads(line) if line.startswith(b"{") else None
                if item and "event_id" in item and ("exception" in item or "logentry" in item):
                    found.append(item)
        return found


@pytest.fixture
def sentry():
    CapturingTransport.sent = []
    error_reports.start("http://public@127.0.0.1:9/1", environment="test", transport=CapturingTransport)
    yield CapturingTransport
    client = sentry_sdk.get_client()
    client.close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
def canary_site(db, settings):
    settings.CUSTOMERIO_APP_API_KEY = API_KEY
    WebhookSettings.load()
    WebhookSettings.objects.update(
        access_key=KEY, previous_access_keys=[{"key": OLD_KEY, "valid_until": "2999-01-01T00:00:00+00:00"}]
    )
    freshness.changed("webhook_settings")


def careless_record_outcome(deliveries, outcome, **kwargs):
    """A defect that holds every secret in innocently named variables and quotes them in its message."""
    from django.conf import settings

    entered = PASSWORD
    link = f"https://example.com/accounts/reset/MQ/{RESET_TOKEN}/"
    upstream = settings.CUSTOMERIO_APP_API_KEY
    previous = OLD_KEY
    raise RuntimeError(f"could not record {len(deliveries)} for {entered} ({link}, {upstream}, {previous})")


def call_wsgi(method: str, url: str, body: bytes, headers: dict) -> int:
    """The request through Django's WSGI handler, as gunicorn calls it (the SDK hooks that handler, not the test
    client's)."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.test import RequestFactory

    environ = RequestFactory().generic(method, url, body, content_type="application/json", headers=headers).environ
    statuses = []
    # As Django's test client does: the test's transaction keeps its connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        answer = WSGIHandler()(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(answer)
        answer.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return int(statuses[0].split()[0])


def test_a_failing_webhook_is_reported_without_any_secret(sentry, canary_site, monkeypatch, emulator, settings):
    import webhooks.intake.views

    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # RequestFactory's address, standing for a proxy: its request id is kept

    monkeypatch.setattr(webhooks.intake.views.deliveries, "record_outcome", careless_record_outcome)
    logging.getLogger("webhooks.intake.views").info("Received /?wpf_action=update_tags&access_key=%s", KEY)
    status = call_wsgi(
        "POST",
        f"/?wpf_action=update_tags&access_key={KEY}&note=hello",
        json.dumps({"email": "ann@example.com", "user_pass": PASSWORD, "password": PASSWORD}).encode(),
        {"X-Access-Key": KEY, "Authorization": f"Bearer {KEY}", "X-Request-ID": "rid-sentry-1"},
    )
    assert status == 500
    sentry_sdk.flush()

    events = sentry.events()
    assert events, sentry.sent
    for payload in sentry.sent:
        for canary in CANARIES:
            assert canary.encode() not in payload, canary
    [event] = [event for event in events if event.get("exception")]
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith("could not record 1 for ********")
    assert event["request"]["url"] == "http://testserver/"
    assert event["request"]["query_string"] == "wpf_action=update_tags&access_key=********&note=hello"
    assert event["request"]["headers"]["X-Access-Key"] == "********"
    # The body, when the SDK could read it after the view did, has its password fields masked (see the next test).
    assert event["request"].get("data", {}).get("user_pass") in (None, "********")
    assert event["tags"]["request_id"] == "rid-sentry-1"
    frames = exception["stacktrace"]["frames"]
    assert frames[-1]["function"] == "careless_record_outcome" and frames[-1]["vars"]["entered"] == "********"
    assert "user" not in event or not event["user"].get("ip_address")  # send_default_pii is off


def test_every_part_of_an_event_is_cleaned(canary_site):
    """before_send on an event as the SDK hands it over (serialized): request, extra, contexts, exception, frame
    variables and breadcrumbs; a secret found under its name anywhere is masked everywhere else too."""
    from settings_app.models import FieldMapping

    FieldMapping.objects.create(cio_attribute="initial_pw_attr", user_field="password", active=False)
    freshness.changed("field_mappings")
    event = {
        "request": {
            "url": f"https://example.com/accounts/reset/MQ/{RESET_TOKEN}/",
            "query_string": f"wpf_action=add&access_key={KEY}",
            "headers": {"X-Access-Key": KEY, "Authorization": f"Basic {KEY}"},
            "data": {"email": "ann@example.com", "user_pass": PASSWORD, "initial_pw_attr": "Canary-Mapped-77"},
        },
        "extra": {"sys.argv": ["manage.py", "webhook_worker"], "settings": {"CUSTOMERIO_APP_API_KEY": API_KEY}},
        "contexts": {"note": {"text": f"old key {OLD_KEY}"}},
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"failed for {PASSWORD} and Canary-Mapped-77",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"given": f"'{PASSWORD}'", "n": "3"}}]},
                }
            ]
        },
        "breadcrumbs": {"values": [{"message": f"Bearer {KEY}", "data": {"token": API_KEY}}]},
    }
    cleaned = error_reports.before_send(event, {})
    text = json.dumps(cleaned)
    assert not [canary for canary in (*CANARIES, "Canary-Mapped-77") if canary in text], text
    assert cleaned["request"]["data"] == {
        "email": "ann@example.com",
        "user_pass": "********",
        "initial_pw_attr": "********",
    }
    assert cleaned["request"]["query_string"] == "wpf_action=add&access_key=********"
    assert cleaned["exception"]["values"][0]["value"] == "failed for ******** and ********"
    assert cleaned["extra"]["sys.argv"] == ["manage.py", "webhook_worker"]


def test_a_login_links_token_is_masked_in_the_url_and_wherever_else_it_appears(canary_site):
    """A failure while a login link is opened: the URL holds the token, and so does the view's variable (a bare
    string, found because the URL's scrubbing found it); the login link field's value too, by its name."""
    WebhookSettings.objects.update(return_login_link_field="site_login_link")
    freshness.changed("webhook_settings")
    token = "1-tabc12-" + "0123456789abcdef" * 2
    event = {
        "request": {"url": f"https://example.com/accounts/login-link/{token}/", "data": {"next": "/members/"}},
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": "boom",
                    "stacktrace": {"frames": [{"function": "login_link", "vars": {"token": f"'{token}'"}}]},
                }
            ]
        },
        "extra": {"person": {"email": "ann@example.com", "site_login_link": "https://example.com/somewhere"}},
    }
    cleaned = error_reports.before_send(event, {})
    assert token not in json.dumps(cleaned)
    assert cleaned["request"]["url"] == "https://example.com/accounts/login-link/********/"
    assert cleaned["extra"]["person"]["site_login_link"] == "********"


def test_breadcrumbs_are_scrubbed_as_they_are_recorded(sentry, canary_site):
    crumb = error_reports.before_breadcrumb(
        {
            "category": "webhooks",
            "message": f"GET /?access_key={KEY} then /accounts/reset/MQ/{RESET_TOKEN}/",
            "data": {"api_key": API_KEY, "url": f"/?wpf_action=add&access_key={KEY}", "object": object()},
        },
        {},
    )
    text = json.dumps(crumb)
    assert not [canary for canary in CANARIES if canary in text]
    assert crumb["data"]["api_key"] == "********"


def test_worker_failures_are_reported_with_their_delivery(sentry, canary_site, emulator, monkeypatch):
    from webhooks.actions import ACTIONS, WebhookAction
    from webhooks.queue import drain

    def failing_update_tags(request):
        secret = PASSWORD
        raise ValueError(f"no luck with {secret}")

    action = ACTIONS["update_tags"]
    monkeypatch.setitem(ACTIONS, "update_tags", WebhookAction(action.name, failing_update_tags, 1, False))
    delivery = WebhookDelivery.objects.create(
        action="update_tags",
        contact="ann@example.com",
        contact_type="email",
        contact_key="email:ann@example.com",
        status="queued",
    )
    drain.process(delivery.pk)
    sentry_sdk.flush()
    [event] = [event for event in sentry.events() if event.get("exception")]
    assert event["exception"]["values"][0]["value"] == "no luck with ********"
    assert (event["tags"]["delivery_id"], event["tags"]["action"]) == (str(delivery.pk), "update_tags")
    assert "request_id" not in event["tags"]
    for payload in sentry.sent:
        assert PASSWORD.encode() not in payload


def test_sentry_is_off_without_a_dsn():
    assert not sentry_sdk.get_client().is_active()


def test_the_settings_start_sentry_when_a_dsn_is_set():
    import os
    import subprocess
    import sys

    from django.conf import settings

    script = (
        "import django, sentry_sdk; django.setup()\n"
        "client = sentry_sdk.get_client()\n"
        "options = client.options\n"
        "print(client.is_active(), options['environment'], options['release'], options['traces_sample_rate'],"
        " bool(options['send_default_pii']), client.get_integration('django') is not None)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings",
        "ENV_FILE": os.devnull,
        "SENTRY_DSN": "http://public@127.0.0.1:9/1",
        "SENTRY_ENVIRONMENT": "staging",
        "SENTRY_RELEASE": "1.2.3",
        "SENTRY_TRACES_SAMPLE_RATE": "0.25",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["True", "staging", "1.2.3", "0.25", "False", "True"], result.stderr


def test_the_passwords_of_the_database_mail_and_redis_are_masked_wherever_they_appear(
    canary_site, settings, monkeypatch
):
    """In a URL they are scrubbed by their place (user:password@); anywhere else the report knows them from the
    settings."""
    database_password, mail_password, redis_password = "Canary-Db-51", "Canary-Mail-52", "Canary-Redis-53"
    # Not a settings override (Django warns against changing DATABASES under a running test): one key, restored.
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", database_password)
    settings.EMAIL_HOST_PASSWORD = mail_password
    settings.REDIS_URL = f"redis://:{redis_password}@cache:6379/0"
    event = {
        "extra": {"dsn": f"postgres://site:{database_password}@db/site", "location": settings.REDIS_URL},
        "exception": {
            "values": [
                {
                    "type": "OperationalError",
                    "value": f"login failed ({mail_password})",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"p": f"'{database_password}'"}}]},
                }
            ]
        },
        "breadcrumbs": {"values": [{"message": "Authorization: Basic c2l0ZTpDYW5hcnktTWFpbC01Mg=="}]},
    }
    text = json.dumps(error_reports.before_send(event, {}))
    for canary in (database_password, mail_password, redis_password, "c2l0ZTpDYW5hcnktTWFpbC01Mg"):
        assert canary not in text, text
    assert "postgres://site:********@db/site" in text
