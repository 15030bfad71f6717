"""Synchronous webhooks when Customer.io is slow or one person's deliveries arrive together: the two reads of a
person go out at once, and a delivery that waited behind another for the same person answers with that one's
result when it read Customer.io after this delivery was received. Runs on PostgreSQL in CI."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection
from django.utils import timezone

from settings_app import freshness
from settings_app.models import WebhookSettings
from users.models import User
from users.services.accounts import ActionRequest, add, update_tags
from users.services.contacts import Contact
from webhooks.models import WebhookDelivery

from .conftest import FIXTURE

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

APP_API_LATENCY_MS = 800


def _return_passwords():
    WebhookSettings.load()
    WebhookSettings.objects.update(return_password=True, return_password_field="site_password")
    freshness.changed("webhook_settings")  # update() sends no signal


def _app_calls(emulator, since=0):
    return emulator.requests("/v1/")[since:]


def _url(live_server, action):
    return f"{live_server.url}/?wpf_action={action}&access_key={WebhookSettings.load().access_key}"


@pytest.mark.parametrize("action", ["add", "update"])
def test_a_slow_customerio_is_read_once_per_round_trip(live_server, cio_emulator, action):
    """Attributes and segments are asked for together: the second call arrives before the first is answered."""
    cio_emulator.reset(FIXTURE)
    _return_passwords()
    if action == "update":
        User.objects.create(username="ann", email="ann@example.com")
    cio_emulator.set_faults(latency_ms=APP_API_LATENCY_MS, path_prefix="/v1/")

    response = requests.post(_url(live_server, action), json={"email": "ann@example.com"}, timeout=30)

    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["Newsletter", "VIP"]
    reads = _app_calls(cio_emulator)
    assert sorted(entry["path"].rsplit("/", 1)[1] for entry in reads) == ["attributes", "segments"]
    assert abs(reads[0]["time"] - reads[1]["time"]) < APP_API_LATENCY_MS / 1000 / 2
    user = User.objects.get(email="ann@example.com")
    assert user.first_name == "Ann"
    if action == "add":
        # The generated password hashed beside the reads is the one Customer.io got back.
        returned = cio_emulator.customer("ann@example.com")["attributes"]["site_password"]
        assert user.check_password(returned)


def test_a_delivery_received_before_anothers_read_answers_with_its_result(cio_emulator):
    cio_emulator.reset(FIXTURE)
    _return_passwords()
    contact = Contact.email("bob@example.com")
    received_before = timezone.now()

    first = add(ActionRequest(contact, received_at=timezone.now(), strength=3, may_reuse=True))
    calls_after_first = len(_app_calls(cio_emulator))
    waited = add(ActionRequest(contact, received_at=received_before, strength=3, may_reuse=True))
    weaker = update_tags(ActionRequest(contact, received_at=received_before, strength=1, may_reuse=True))

    assert calls_after_first == 2
    assert len(_app_calls(cio_emulator)) == 2  # neither read Customer.io again
    assert first.created and first.user is not None
    assert waited.as_dict() == {**first.as_dict(), "created": False, "updated_fields": [], "reused": True}
    assert weaker.as_dict()["reused"] and weaker.user == first.user and weaker.tags == first.tags
    assert User.objects.count() == 1
    assert len(cio_emulator.requests("/api/v1/customers/")) == 1  # one password returned


def test_a_delivery_carrying_a_new_email_is_not_answered_with_the_old_emails_result(cio_emulator):
    bob = {"email": "bob@example.com", "id": "bob", "cio_id": "cio-bob", "segments": [3]}
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": [bob]})
    User.objects.create(username="bob", email="bob@example.com", cio_id="cio-bob")
    received_before = timezone.now()
    update_tags(
        ActionRequest(
            Contact("email", "bob@example.com", cio_id="cio-bob"),
            received_at=timezone.now(),
            strength=1,
            may_reuse=True,
        )
    )
    cio_emulator.load({"customers": [{"cio_id": "cio-bob", "email": "bob.new@example.com", "segments": [3]}]})

    # Received before that read, but naming the person by their new email: it follows the change itself.
    renamed = update_tags(
        ActionRequest(
            Contact("email", "bob.new@example.com", cio_id="cio-bob"),
            received_at=received_before,
            strength=1,
            may_reuse=True,
        )
    )

    assert "reused" not in renamed.as_dict()
    assert User.objects.get().email == "bob.new@example.com"


def test_a_delivery_received_after_anothers_read_reads_again(cio_emulator):
    cio_emulator.reset(FIXTURE)
    contact = Contact.email("bob@example.com")
    add(ActionRequest(contact, received_at=timezone.now(), strength=3, may_reuse=True))
    cio_emulator.load({"customers": [{"email": "bob@example.com", "id": "bob", "segments": [1]}]})

    later = add(ActionRequest(contact, received_at=timezone.now(), strength=3, may_reuse=True))

    assert len(_app_calls(cio_emulator)) == 4
    assert "reused" not in later.as_dict()
    assert later.tags == ["VIP"]  # what Customer.io says now, not the first processing's answer


def test_a_weaker_earlier_read_is_not_reused_by_a_stronger_delivery(cio_emulator):
    cio_emulator.reset(FIXTURE)
    User.objects.create(username="bob", email="bob@example.com")
    contact = Contact.email("bob@example.com")
    received_before = timezone.now()
    update_tags(ActionRequest(contact, received_at=timezone.now(), strength=1, may_reuse=True))

    stronger = add(ActionRequest(contact, received_at=received_before, strength=3, may_reuse=True))

    assert "reused" not in stronger.as_dict()
    assert len(_app_calls(cio_emulator)) == 3  # segments, then attributes and segments
    assert User.objects.get(email="bob@example.com").first_name == "Bob"


def test_a_delivery_sent_after_anothers_read_began_is_not_answered_with_its_result(live_server, cio_emulator):
    """B arrives while A is reading (on PostgreSQL it then waits for A's lock): A's data may predate B's, so B
    reads Customer.io itself — B is not a copy of A (another body). A copy would share A's read
    (test_identical_copies)."""
    cio_emulator.reset(FIXTURE)
    cio_emulator.set_faults(latency_ms=APP_API_LATENCY_MS, path_prefix="/v1/")
    url = _url(live_server, "add")
    bodies = {"a": {"email": "bob@example.com"}, "b": {"email": "bob@example.com", "journey": "second"}}
    answers = {}

    def send(name):
        answers[name] = requests.post(url, json=bodies[name], timeout=30)

    first = threading.Thread(target=send, args=("a",))
    first.start()
    deadline = time.monotonic() + 10
    while not _app_calls(cio_emulator) and time.monotonic() < deadline:
        time.sleep(0.02)
    send("b")
    first.join(timeout=30)

    assert answers["a"].status_code == answers["b"].status_code == 200
    assert "reused" not in answers["b"].json()
    assert len(_app_calls(cio_emulator)) == 4
    assert User.objects.count() == 1
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 2


@pytest.fixture
def connections_for_twenty():
    """Coalescing needs the deliveries received at once, each holding a database connection while it waits for the
    contact's lock: a PostgreSQL pool of 20 or more (DATABASE_POOL_MAX_SIZE, default 8), as a site expecting bursts
    of 20 sets it. SQLite opens a connection per thread anyway."""
    options = connection.settings_dict.get("OPTIONS") or {}
    if connection.vendor != "postgresql" or not options.get("pool"):
        yield
        return
    default_pool = options["pool"]
    connection.close()
    connection.close_pool()
    options["pool"] = {**default_pool, "max_size": 24}
    yield
    connection.close()
    connection.close_pool()
    options["pool"] = default_pool


def test_twenty_concurrent_adds_share_the_reads(live_server, cio_emulator, settings, connections_for_twenty):
    """Each delivery keeps its own row and answer; those that waited behind the first reader answer with its result
    (on PostgreSQL they wait for the contact's lock; on SQLite, which reads before the lock, for their turn)."""
    cio_emulator.reset(FIXTURE)
    # All 20 are received while the first or second reader waits for Customer.io, even on a busy machine.
    cio_emulator.set_faults(latency_ms=1000, path_prefix="/v1/")
    settings.WEBHOOK_SYNC_DEADLINE = 20  # on SQLite they queue for the write lock and the emulator's 10/s
    _return_passwords()
    url = _url(live_server, "add")

    def send(n):
        response = requests.post(url, json={"email": "bob@example.com"}, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))

    assert [status for status, _ in answers] == [200] * 20, answers
    assert sum(1 for _, body in answers if body["created"]) == 1
    assert len({body["user_id"] for _, body in answers}) == 1
    assert User.objects.count() == 1
    assert len(cio_emulator.requests("/api/v1/customers/")) == 1  # one password return
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 20
    assert len(_app_calls(cio_emulator)) <= 4
    assert sum(1 for _, body in answers if body.get("reused")) >= 18
