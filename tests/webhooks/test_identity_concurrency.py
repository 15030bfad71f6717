"""One person's deliveries run one after another whichever identifier each carries (live server, threads, real
HTTP). Runs on PostgreSQL in CI: there the user's row lock does it; SQLite serialises write transactions anyway."""

import threading
from itertools import groupby

import pytest
import requests

from settings_app.models import WebhookSettings
from users.models import ActivityLog, User

from .conftest import FIXTURE

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def test_an_email_only_and_a_cio_id_only_delivery_for_one_person_are_serialised(live_server, cio_emulator, settings):
    ann = {**FIXTURE["customers"][0], "cio_id": "cio-ann"}
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": [ann]})
    settings.WEBHOOK_SYNC_DEADLINE = 20
    User.objects.create_user(username="ann", email="ann@example.com", cio_id="cio-ann")
    url = f"{live_server.url}/?wpf_action=update&access_key={WebhookSettings.load().access_key}"
    # Brought up to date first, so that the updates below save nothing: the user row's own update lock must not be
    # what serialises them.
    assert requests.post(url, json={"cio_id": "cio-ann"}, timeout=60).status_code == 200
    ActivityLog.objects.all().delete()
    cio_emulator.clear_requests()
    # Each update makes two calls (attributes, segments) and writes a line after each: with every call slow, two
    # updates running at once would interleave their lines.
    cio_emulator.configure(latency_ms=400)
    start = threading.Barrier(2)
    answers = {}

    def deliver(name, body):
        start.wait()
        answers[name] = requests.post(url, json=body, timeout=60)

    threads = [
        threading.Thread(target=deliver, args=("email", {"email": "ann@example.com"})),
        threading.Thread(target=deliver, args=("cio_id", {"cio_id": "cio-ann"})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    assert {name: answer.status_code for name, answer in answers.items()} == {"email": 200, "cio_id": 200}
    assert {answer.json()["user_id"] for answer in answers.values()} == {User.objects.get().pk}
    # Every line one processing wrote comes before every line of the other: they did not run at once.
    lines = ActivityLog.objects.exclude(delivery_id=None).order_by("pk").values_list("delivery_id", flat=True)
    runs = [delivery for delivery, _ in groupby(lines)]
    assert len(runs) == 2, list(lines)
    # Each called Customer.io by the identifier it carried.
    called = [entry["path"] for entry in cio_emulator.requests("/v1/")]
    assert sorted(called) == sorted(
        [
            "/v1/customers/ann@example.com/attributes",
            "/v1/customers/ann@example.com/segments",
            "/v1/customers/cio-ann/attributes",
            "/v1/customers/cio-ann/segments",
        ]
    )
