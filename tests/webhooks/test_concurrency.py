"""Concurrent deliveries for one person, against a live server (threads, real HTTP). Runs on PostgreSQL in CI."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from settings_app import freshness
from settings_app.models import WebhookSettings
from users.models import User
from webhooks.models import WebhookDelivery

from .conftest import FIXTURE

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def test_twenty_concurrent_adds_make_one_user_and_one_password_return(live_server, cio_emulator, settings):
    cio_emulator.reset(FIXTURE)
    settings.WEBHOOK_SYNC_DEADLINE = 20  # they queue on the contact lock; this test is about outcomes, not time
    WebhookSettings.load()
    WebhookSettings.objects.update(return_password=True, return_password_field="site_password")
    key = WebhookSettings.load().access_key
    url = f"{live_server.url}/?wpf_action=add&access_key={key}"

    def add(n):
        response = requests.post(url, json={"email": "ann@example.com"}, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(add, range(20)))

    assert [status for status, _ in answers] == [200] * 20, answers
    assert sum(1 for _, body in answers if body["created"]) == 1
    assert User.objects.count() == 1
    puts = cio_emulator.requests("/api/")
    assert len(puts) == 1
    user = User.objects.get()
    assert user.check_password(cio_emulator.customer("ann@example.com")["attributes"]["site_password"])
    assert not user.password_return_due
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 20


def test_concurrent_retries_of_one_delivery_run_it_once(live_server, cio_emulator, settings):
    cio_emulator.reset(FIXTURE)
    cio_emulator.configure(latency_ms=300)  # keep the first attempt busy while the others arrive
    key = WebhookSettings.load().access_key
    url = f"{live_server.url}/?wpf_action=add&access_key={key}"

    def add(n):
        response = requests.post(
            url, json={"email": "bob@example.com"}, headers={"x-cio-idempotency-key": "same-delivery"}, timeout=60
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(add, range(5)))
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 503}
    assert User.objects.count() == 1
    assert len(cio_emulator.requests("/v1/customers/bob@example.com/attributes")) == 1
    assert WebhookDelivery.objects.count() == 1


def test_twenty_people_with_one_name_get_the_next_free_usernames_whatever_the_concurrency(
    live_server, cio_emulator, settings
):
    people = [
        {"email": f"sam{n}@example.com", "id": f"sam{n}", "attributes": {"first_name": "Sam", "last_name": "Same"}}
        for n in range(20)
    ]
    cio_emulator.reset({"segments": [], "customers": people})
    settings.WEBHOOK_SYNC_DEADLINE = 20
    WebhookSettings.load()
    WebhookSettings.objects.update(username_format=WebhookSettings.UsernameFormat.FLNAME)
    freshness.changed("webhook_settings")  # update() sends no signal
    url = f"{live_server.url}/?wpf_action=add&access_key={WebhookSettings.load().access_key}"

    def add(n):
        response = requests.post(url, json={"email": f"sam{n}@example.com"}, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(add, range(20)))

    assert [status for status, _ in answers] == [200] * 20, answers
    assert all(body["created"] for _, body in answers)
    usernames = sorted(User.objects.values_list("username", flat=True))
    assert usernames == sorted(["SamSame", *(f"SamSame{n}" for n in range(2, 21))])
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 20
