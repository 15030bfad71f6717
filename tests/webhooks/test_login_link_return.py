"""The login link a journey's email offers, end to end: an `add` webhook creates the user, the worker's outbox writes a
fresh single-use link to the chosen Customer.io attribute (counted from the emulator), and the link logs the person
in once. Never for existing users unless the settings say so, and never written to a log, a stored delivery or the
activity log."""

import logging
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from users.models import ActivityLog, OutboxEntry, User
from users.services import outbox_sender
from webhooks.models import WebhookDelivery

from .conftest import make_user, set_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def links_on(settings):
    settings.SITE_BASE_URL = "http://testserver"
    set_settings(return_login_link=True, return_login_link_field="login_link")


def returned_link(emulator, email) -> str:
    return emulator.customer(email)["attributes"].get("login_link", "")


def test_a_user_created_by_add_gets_a_link_that_logs_them_in_once(hook, emulator, links_on, client, caplog):
    caplog.set_level(logging.DEBUG)
    assert hook("add").status_code == 200
    user = User.objects.get(email="ann@example.com")
    assert OutboxEntry.objects.filter(user=user, kind="login_link").count() == 1

    outbox_sender.send_due()

    link = returned_link(emulator, "ann@example.com")
    assert link.startswith("http://testserver/accounts/login-link/")
    path = urlsplit(link).path
    assert client.get(path).status_code == 200  # the page a mail scanner sees: nobody logged in
    assert "_auth_user_id" not in client.session
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == reverse("account")
    assert client.session["_auth_user_id"] == str(user.pk)

    client.logout()
    again = client.post(path)
    assert again.status_code == 302 and again["Location"].startswith(reverse("login"))
    assert "_auth_user_id" not in client.session

    token = path.rstrip("/").rsplit("/", 1)[-1]
    stored = [str(delivery.__dict__) for delivery in WebhookDelivery.objects.all()]
    stored += [f"{line.message} {line.context}" for line in ActivityLog.objects.all()]
    assert not any(token in text for text in stored)
    assert token not in caplog.text


def test_an_existing_user_gets_a_link_only_when_the_settings_say_so(hook, emulator, links_on):
    make_user("ann@example.com")
    assert hook("add").status_code == 200
    assert not OutboxEntry.objects.filter(kind="login_link").exists()

    set_settings(return_login_link_to_existing=True)
    assert hook("add").status_code == 200
    outbox_sender.send_due()
    assert returned_link(emulator, "ann@example.com").startswith("http://testserver/accounts/login-link/")


def test_no_link_without_a_base_url_and_the_activity_log_says_why(hook, emulator, links_on, settings):
    settings.SITE_BASE_URL = ""
    assert hook("add").status_code == 200

    outbox_sender.send_due()

    assert returned_link(emulator, "ann@example.com") == ""
    assert not OutboxEntry.objects.exists()
    line = ActivityLog.objects.get(message__contains="no login link returned")
    assert "SITE_BASE_URL" in line.message


def test_a_password_returned_again_comes_with_a_fresh_link(hook, emulator, links_on, client, settings):
    """The link is signed over the password: when Return Password's retry sets a new one, the link sent with the
    first is dead, and a fresh link is owed."""
    settings.CUSTOMERIO_MAX_RETRIES = 0
    set_settings(return_password=True, return_password_field="site_password")
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/v1/customers/", method="PUT")
    assert hook("add").status_code == 502  # the password was not returned: Customer.io retries the delivery
    outbox_sender.send_due()
    first = returned_link(emulator, "ann@example.com")
    assert first

    emulator.set_faults()
    assert hook("add").status_code == 200  # the retry: a fresh password, returned
    outbox_sender.send_due()
    second = returned_link(emulator, "ann@example.com")

    assert second != first
    assert client.post(urlsplit(first).path)["Location"].startswith(reverse("login"))
    assert client.post(urlsplit(second).path)["Location"] == reverse("account")
