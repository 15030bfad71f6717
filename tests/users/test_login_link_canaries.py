"""A login link's token is never written anywhere: not in a log line (the site's own, Django's request and CSRF
lines, django-axes', the development server's and gunicorn's access lines), an ActivityLog row, a stored webhook
body or django-axes' access log. A whole flow runs with every logger at DEBUG and the configured handlers writing
to a buffer; the token is then looked for everywhere."""

import io
import json
import logging
import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from settings_app import freshness
from settings_app.models import WebhookSettings
from settings_app.redaction import redact, scrub, secret_values
from users.models import ActivityLog, User
from users.services.accounts import secret_attribute_names
from users.services.activity import log_activity
from users.services.login_links import login_url
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

LOGGERS = ("", "django", "django.server", "django.request", "django.security.csrf", "axes", "users", "webhooks")


@pytest.fixture
def written():
    """Everything the configured handlers (settings.LOGGING: the secret scrubber first) write meanwhile, with every
    logger the site configures at DEBUG."""
    sink = io.StringIO()
    handlers = {
        handler
        for name in ("", "django", "django.server", "axes")
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, logging.StreamHandler) and handler.name in ("console", "django.server")
    }
    assert {handler.name for handler in handlers} == {"console", "django.server"}
    streams = {handler: handler.setStream(sink) for handler in handlers}
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield sink
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler, stream in streams.items():
        handler.setStream(stream)


def test_the_token_is_never_logged_nor_stored(settings, caplog, written):
    from axes.models import AccessLog

    caplog.set_level(logging.DEBUG)
    settings.SITE_BASE_URL = "https://members.example.com"
    WebhookSettings.load()
    WebhookSettings.objects.update(return_login_link=True, return_login_link_field="site_login_link")
    freshness.changed("webhook_settings")
    ann = User.objects.create(username="ann", email="ann@example.com")
    url = login_url(ann)
    path = urlsplit(url).path
    token = path.split("/")[-2]

    # A journey sends the link back in a webhook's body: under the login link field, and quoted under another name.
    key = WebhookSettings.load().access_key
    body = {"email": "ann@example.com", "site_login_link": url, "note": f"Your link: {url}"}
    answer = Client().post(f"/?wpf_action=test&access_key={key}", json.dumps(body), content_type="application/json")
    assert answer.status_code == 200
    # A careless activity line quoting the link, in its message and its context.
    log_activity(ActivityLog.Source.WEBHOOK, f"Sent {url}", user=ann, context={"link": url})

    # The person's browser: the page, a POST without the CSRF token (Django logs the refusal with the path), a
    # mistyped address (a 404, logged with the path), the real POST, and the link once more.
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(path)
    assert browser.post(path).status_code == 403
    assert browser.get(path.replace("login-link", "Login-Link")).status_code == 404
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    assert browser.post(path, {"csrfmiddlewaretoken": csrf}).status_code == 302
    assert Client().get(path).status_code == 302  # used: refused
    # The development server's request line, as django.core.servers.basehttp logs it.
    logging.getLogger("django.server").info('"%s" %s %s', f"POST {path} HTTP/1.1", "302", "0")

    printed = written.getvalue()
    assert f"User {ann.pk} logged in through a login link" in printed
    assert "A login link was refused (used, outdated or not ours)" in printed
    assert "/accounts/login-link/********/" in printed  # the lines that quote the path were written, masked
    assert "Forbidden (CSRF" in printed and "Not Found: /accounts/Login-Link/********/" in printed
    stored = [
        *(json.dumps(row, default=str) for row in WebhookDelivery.objects.values()),
        *(json.dumps(row, default=str) for row in ActivityLog.objects.values()),
        *(json.dumps(row, default=str) for row in AccessLog.objects.values()),
    ]
    for text in (printed, caplog.text, *stored):
        assert token not in text
    delivery = WebhookDelivery.objects.get()
    assert delivery.body["site_login_link"] == "********"
    assert delivery.body["note"] == "Your link: https://members.example.com/accounts/login-link/********/"


def test_a_gunicorn_access_line_loses_the_token():
    token = "1a-t2b3c4-" + "0123456789abcdef" * 2
    line = f'127.0.0.1 [12/May/2025:10:00:00 +0000] "GET /accounts/login-link/{token}/?next=/x/ HTTP/1.1" 200 512'
    assert scrub(line) == (
        '127.0.0.1 [12/May/2025:10:00:00 +0000] "GET /accounts/login-link/********/?next=/x/ HTTP/1.1" 200 512'
    )
    # An error report finds the token wherever else it appears (a frame's variable, say).
    assert secret_values(line) == {token}
    assert redact({"link": f"https://site/accounts/login-link/{token}/"}) == {
        "link": "https://site/accounts/login-link/********/"
    }


def test_the_login_link_field_is_a_secret_attribute():
    WebhookSettings.load()
    WebhookSettings.objects.update(return_login_link_field=" site_login_link ", return_password_field="site_password")
    names = secret_attribute_names(WebhookSettings.load())
    assert {"site_login_link", "site_password"} <= names


def test_a_stored_body_whose_attributes_were_scrubbed_is_not_used_as_the_person():
    """The worker processes a queued delivery from its stored body: an attribute with a masked token in it is not
    the person's real value, so the attributes are fetched from Customer.io instead (as for a masked password)."""
    from users.services.contacts import Contact
    from webhooks.payload import person_from_body

    contact = Contact.email("ann@example.com")
    token = "1a-t2b3c4-" + "0123456789abcdef" * 2
    sent = {
        "email": "ann@example.com",
        "attributes": {"first_name": "Ann", "link": f"https://s/accounts/login-link/{token}/"},
    }
    assert person_from_body(sent, contact)["attributes"]["first_name"] == "Ann"  # as sent: used
    stored = redact(sent)
    assert token not in json.dumps(stored)
    assert person_from_body(stored, contact) is None
