"""Identical synchronous webhooks for one person arriving together (issue 20): the same URL and body, each its own
delivery, read the person from Customer.io once — on the development server and under gunicorn, on both databases.
The rule (users.services.accounts.recent_reads): a copy that arrived while another copy was still being answered
counts as received when the first copy of that run did; a read begun after that answers it."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone

from settings_app import freshness
from settings_app.models import WebhookSettings
from users.models import ContactLock, User
from users.services.accounts import ActionRequest, Copy, add
from users.services.accounts.recent_reads import counted_as_received, one_reader_at_a_time
from users.services.contacts import Contact
from webhooks.models import WebhookDelivery

from .conftest import FIXTURE

pytestmark = pytest.mark.django_db(transaction=True)

BURST = 20
NEW_PEOPLE = [
    {"email": "dan@example.com", "id": "dan", "attributes": {"first_name": "Dan"}, "segments": [1]},
    {"email": "eve@example.com", "id": "eve", "attributes": {"first_name": "Eve"}, "segments": [2, 3]},
]
# As plain curl sends them (no Customer.io headers), and as Customer.io does (a delivery id each).
NO_HEADERS = "no delivery headers"
DELIVERY_IDS = "distinct delivery ids"


def _return_passwords():
    WebhookSettings.load()
    WebhookSettings.objects.update(return_password=True, return_password_field="site_password")
    freshness.changed("webhook_settings")  # update() sends no signal


def _headers(style: str, n: int) -> dict:
    return {"x-cio-delivery-id": f"burst-{n}-{time.time_ns()}"} if style == DELIVERY_IDS else {}


def _app_api_reads(emulator, email: str) -> list[dict]:
    return emulator.requests(f"/v1/customers/{email}/")


def _password_returns(emulator, email: str) -> list[dict]:
    user = User.objects.get(email=email)
    # Returned by cio_id once the user has it (see accounts.passwords.return_password).
    return emulator.requests(f"/api/v1/customers/cio_{user.cio_id}" if user.cio_id else f"/api/v1/customers/{email}")


def _assert_read_once(emulator, email: str, answers: list[tuple[int, dict]]):
    assert [status for status, _ in answers] == [200] * BURST, answers
    assert User.objects.filter(email=email).count() == 1
    user = User.objects.get(email=email)
    assert sum(1 for _, body in answers if body["created"]) == 1
    assert {body["user_id"] for _, body in answers} == {user.pk}
    assert sum(1 for _, body in answers if body.get("reused")) == BURST - 1
    assert sorted(entry["path"].rsplit("/", 1)[1] for entry in _app_api_reads(emulator, email)) == [
        "attributes",
        "segments",
    ]
    assert len(_password_returns(emulator, email)) == 1
    recorded = WebhookDelivery.objects.filter(contact=email)
    assert recorded.count() == BURST
    assert set(recorded.values_list("status", "http_status", "user_id")) == {("succeeded", 200, user.pk)}
    assert sorted(json.dumps(delivery.result, sort_keys=True) for delivery in recorded) == sorted(
        json.dumps(body, sort_keys=True) for _, body in answers
    )


# The rule ---------------------------------------------------------------------------------------------------------


def _counted(received_at, *copies):
    request = ActionRequest(Contact.email("dan@example.com"), received_at=received_at, copies=list(copies))
    return counted_as_received(request)


def test_a_delivery_counts_as_received_when_the_first_copy_of_its_run_arrived():
    t0 = timezone.now()
    seconds = [t0 + timedelta(seconds=n / 10) for n in range(10)]

    assert _counted(seconds[5]) == seconds[5]
    # The first copy was answered before the second arrived, and the second is still being answered.
    assert _counted(seconds[5], Copy(seconds[0], seconds[1]), Copy(seconds[2], None)) == seconds[2]
    # Each arrived before the one before it was answered: one run.
    assert _counted(seconds[5], Copy(seconds[0], seconds[3]), Copy(seconds[2], seconds[6])) == seconds[0]
    # Every earlier copy was answered before this one arrived: it counts from its own arrival.
    assert _counted(seconds[5], Copy(seconds[0], seconds[4]), Copy(seconds[1], seconds[2])) == seconds[5]


def test_a_run_of_copies_reaches_back_no_further_than_the_sync_deadline(settings):
    settings.WEBHOOK_SYNC_DEADLINE = 3
    now = timezone.now()

    still_unanswered = Copy(now - timedelta(seconds=5), None)

    assert _counted(now, still_unanswered) == now
    assert _counted(now, still_unanswered, Copy(now - timedelta(seconds=2), None)) == now - timedelta(seconds=2)


def test_a_copy_that_arrived_while_the_first_was_being_answered_uses_its_read(cio_emulator):
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": NEW_PEOPLE})
    _return_passwords()
    contact = Contact.email("dan@example.com")
    first_received = timezone.now()
    first = add(ActionRequest(contact, received_at=first_received, strength=3, may_reuse=True))

    # Arrived after the first one's read began, while the first was still being answered.
    copy = add(
        ActionRequest(
            contact, received_at=timezone.now(), strength=3, may_reuse=True, copies=[Copy(first_received, None)]
        )
    )

    assert copy.as_dict() == {**first.as_dict(), "created": False, "updated_fields": [], "reused": True}
    assert len(_app_api_reads(cio_emulator, "dan@example.com")) == 2
    assert len(_password_returns(cio_emulator, "dan@example.com")) == 1


def test_a_copy_that_arrived_once_the_others_were_answered_reads_again(cio_emulator):
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": NEW_PEOPLE})
    contact = Contact.email("dan@example.com")
    first_received = timezone.now()
    add(ActionRequest(contact, received_at=first_received, strength=3, may_reuse=True))
    first_answered = timezone.now()
    cio_emulator.load({"customers": [{**NEW_PEOPLE[0], "segments": [2]}]})

    later = add(
        ActionRequest(
            contact,
            received_at=timezone.now(),
            strength=3,
            may_reuse=True,
            copies=[Copy(first_received, first_answered)],
        )
    )

    assert "reused" not in later.as_dict()
    assert later.tags == ["Newsletter"]  # what Customer.io says now
    assert len(_app_api_reads(cio_emulator, "dan@example.com")) == 4


@pytest.mark.concurrency
def test_another_processes_claim_holds_a_synchronous_delivery_until_it_is_released():
    """SQLite's turns across processes: a claim on the contact's lock row, as another process would hold it."""
    key = Contact.email("dan@example.com").lock_key
    ContactLock.objects.create(key=key, read_claimed_until=timezone.now() + timedelta(seconds=30))

    def release_later():
        time.sleep(0.3)
        try:
            ContactLock.objects.filter(key=key).update(read_claimed_until=None)
        finally:
            connection.close()  # this thread's own

    releaser = threading.Thread(target=release_later)
    started = time.monotonic()
    releaser.start()
    with one_reader_at_a_time(key, deadline=time.monotonic() + 10):
        waited = time.monotonic() - started
        claimed = ContactLock.objects.get(key=key).read_claimed_until
    releaser.join()

    assert waited >= 0.3
    assert claimed is not None and claimed > timezone.now()  # its own claim, for other processes to wait on
    assert ContactLock.objects.get(key=key).read_claimed_until is None  # released on the way out


@pytest.mark.concurrency
def test_past_its_deadline_a_delivery_goes_ahead_of_a_claim_that_is_never_released():
    key = Contact.email("dan@example.com").lock_key
    held_until = timezone.now() + timedelta(seconds=30)
    ContactLock.objects.create(key=key, read_claimed_until=held_until)

    started = time.monotonic()
    with one_reader_at_a_time(key, deadline=time.monotonic() + 0.2):
        waited = time.monotonic() - started

    assert 0.2 <= waited < 5
    assert ContactLock.objects.get(key=key).read_claimed_until == held_until  # not its to release


# Over HTTP: the development server ----------------------------------------------------------------------------------


def _url(base: str) -> str:
    return f"{base}/?wpf_action=add&access_key={WebhookSettings.load().access_key}"


@pytest.mark.concurrency
def test_a_copy_sent_while_the_first_ones_read_is_under_way_uses_it(live_server, cio_emulator):
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": NEW_PEOPLE})
    cio_emulator.set_faults(latency_ms=800, path_prefix="/v1/")
    url = _url(live_server.url)
    answers = {}

    def send(name):
        answers[name] = requests.post(url, json={"email": "dan@example.com"}, timeout=30)

    first = threading.Thread(target=send, args=("first",))
    first.start()
    deadline = time.monotonic() + 10
    while not _app_api_reads(cio_emulator, "dan@example.com") and time.monotonic() < deadline:
        time.sleep(0.02)
    send("copy")
    first.join(timeout=30)

    assert answers["first"].status_code == answers["copy"].status_code == 200
    assert answers["copy"].json()["reused"] is True
    assert len(_app_api_reads(cio_emulator, "dan@example.com")) == 2


@pytest.mark.concurrency
@pytest.mark.parametrize("style", [NO_HEADERS, DELIVERY_IDS])
def test_twenty_identical_adds_read_the_person_once(live_server, cio_emulator, settings, style):
    """On the development server, twenty new connections at once (its listen backlog is raised for that: see
    webhooks.apps)."""
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": NEW_PEOPLE})
    settings.WEBHOOK_SYNC_DEADLINE = 20  # on a loaded machine they may queue a while for SQLite's write lock
    _return_passwords()
    answers = _send_burst(_url(live_server.url), "dan@example.com", style, {})
    _assert_read_once(cio_emulator, "dan@example.com", answers)


def _send_burst(url: str, email: str, style: str, headers: dict) -> list[tuple[int, dict]]:
    """BURST identical adds on new connections, sent at once, as plain HTTP clients send them."""
    start = threading.Barrier(BURST)

    def send(n):
        start.wait()
        response = requests.post(url, json={"email": email}, headers={**headers, **_headers(style, n)}, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        return list(pool.map(send, range(BURST)))


# Over HTTP: gunicorn with the production settings -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite under gunicorn: on a quiet machine 2 calls too, but a copy starved of CPU (a busy CI host) can "
    "reach the site after the burst was answered and read again, as a later webhook must: timing, not the rule",
)
def test_twenty_identical_adds_read_the_person_once_under_gunicorn(
    cio_emulator, subprocess_env, production_helpers, tmp_path
):
    """2 processes with a thread for every request of the burst (and, on PostgreSQL, a connection for each), the
    condition docs/webhooks.md states: with fewer (gunicorn's default 2 x 8), the requests left waiting for a thread may
    arrive once every earlier copy was answered, and then read for themselves, as a later webhook must."""
    cio_emulator.reset({"segments": FIXTURE["segments"], "customers": NEW_PEOPLE})
    # The App API as it often answers (under a second): the burst arrives while the first copy's reads are under
    # way, which is the case the rule is for. Without it, on a busy host a copy starved of CPU could reach the site
    # after every earlier copy was answered, and rightly read again (a CI run in dozens did).
    cio_emulator.set_faults(latency_ms=800, path_prefix="/v1/")
    _return_passwords()
    env = production_helpers.production_env(tmp_path, subprocess_env["DATABASE_URL"], cio_emulator.url)
    processes = production_helpers.Processes(tmp_path)
    bursts = {}
    try:
        site = production_helpers.start_gunicorn(
            processes,
            env,
            WEB_CONCURRENCY="2",
            GUNICORN_THREADS=str(BURST),
            DATABASE_POOL_MAX_SIZE=str(BURST),
            GUNICORN_ACCESS_LOG="",
        )
        url = _url(site)
        for style, email in ((NO_HEADERS, "dan@example.com"), (DELIVERY_IDS, "eve@example.com")):
            bursts[email] = _send_burst(url, email, style, production_helpers.VIA_PROXY)
    finally:
        stopped = processes.stop_all()

    assert stopped == {"gunicorn": 0}, processes.output("gunicorn")
    for email, answers in bursts.items():
        _assert_read_once(cio_emulator, email, answers)
