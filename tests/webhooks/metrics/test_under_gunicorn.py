"""The acceptance test of /metrics: the site as production runs it — gunicorn with 2 workers (replaced every few
requests, so that counts of ended workers are folded in as they go), a `webhook_worker` process, all counting into
one PROMETHEUS_MULTIPROC_DIR — driven with good, refused and too-large webhooks, queued work and Customer.io
failures (the emulator's fault injection); each counter moves by exactly what was sent, scrapes through either
worker never go backwards, and the gauges are the database's."""

import json
import time
from collections import Counter

import pytest
import requests

from users.models import User
from webhooks.models import WebhookDelivery

from ...worker_processes import wait_for
from ..conftest import FIXTURE
from .conftest import TOKEN, parse, value

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.concurrency]

COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
# Every Customer.io attempt the site made, as the emulator saw it: (api, status).
CUSTOMERIO_PATHS = ("/v1/", "/api/")


@pytest.fixture
def site(cio_emulator, subprocess_env, production_helpers, tmp_path):
    """gunicorn (2 workers, each replaced after 6 requests) and a webhook_worker, sharing one metrics directory."""
    cio_emulator.reset(FIXTURE)
    for person in FIXTURE["customers"]:
        User.objects.create_user(username=person["email"], email=person["email"], password="pw-unused-123")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = production_helpers.production_env(
        tmp_path,
        subprocess_env["DATABASE_URL"],
        cio_emulator.url,
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        CUSTOMERIO_MAX_RETRIES="1",
        WEBHOOK_SWEEP_SECONDS="0.5",
    )
    processes = production_helpers.Processes(tmp_path)
    try:
        url = production_helpers.start_gunicorn(
            processes, env, WEB_CONCURRENCY="2", GUNICORN_CMD_ARGS="--max-requests 6", GUNICORN_ACCESS_LOG=""
        )
        worker = processes.start(
            "worker", [production_helpers.PYTHON, "manage.py", "webhook_worker", "--interval", "0.2"], env
        )
        yield url, production_helpers.VIA_PROXY, metrics_dir, worker
    finally:
        stopped = processes.stop_all()
    assert stopped == {"gunicorn": 0, "worker": 0}, processes.output("gunicorn") + processes.output("worker")


def scrape(url: str, headers: dict) -> dict:
    # A new connection each time: gunicorn's two workers (and their replacements) take turns.
    response = requests.get(f"{url}/metrics", headers={**headers, "Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    return parse(response.text)


def customerio_attempts(emulator) -> Counter:
    return Counter(
        ("app" if entry["path"].startswith("/v1/") else "track", str(entry["status"]))
        for entry in emulator.requests()
        if entry["path"].startswith(CUSTOMERIO_PATHS)
    )


def counters_of(samples: dict) -> dict:
    return {key: number for key, number in samples.items() if key[0].endswith(COUNTER_SUFFIXES)}


def test_every_counter_moves_by_exactly_what_was_sent(site, cio_emulator, access_key):
    url, via_proxy, metrics_dir, worker = site
    cio_emulator.clear_requests()
    before = scrape(url, via_proxy)

    def webhook(action=None, key=access_key, body=None, **query):
        params = {**({"wpf_action": action} if action else {}), **({"access_key": key} if key else {}), **query}
        data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        headers = {**via_proxy, "Content-Type": "application/json"}
        return requests.post(f"{url}/", params=params, data=data, headers=headers, timeout=30).status_code

    # 3 good, 4 refused for their key (1 of them a stranger's action), 1 too large, 2 queued, 1 that Customer.io fails.
    answers = [webhook("test") for _ in range(3)]
    answers += [webhook("update_tags", key="wrong-key") for _ in range(2)]
    answers.append(webhook("update_tags", key=None, body={"email": "ann@example.com"}))
    answers.append(webhook("x" * 40, key="wrong-key"))
    answers.append(webhook("update", body=b'{"email": "ann@example.com", "pad": "' + b"x" * 70_000 + b'"}'))
    answers += [webhook("update_tags", body={"email": email}, **{"async": "true"}) for email in FIXTURE_EMAILS[:2]]
    cio_emulator.set_faults(fail_rate=1.0, fail_status=503, path_prefix="/v1/customers/cara")
    answers.append(webhook("update_tags", body={"email": "cara+news@example.com"}))
    assert answers == [200, 200, 200, 403, 403, 403, 403, 413, 200, 200, 502]

    queued = WebhookDelivery.objects.filter(query__async="true")
    wait_for(lambda: set(queued.values_list("status", flat=True)) == {"succeeded"}, what="the worker")
    expected = {
        ("webhook_requests_total", ("test", "200")): 3,
        ("webhook_requests_total", ("update_tags", "403")): 3,
        ("webhook_requests_total", ("unknown", "403")): 1,
        ("webhook_requests_total", ("update", "413")): 1,
        ("webhook_requests_total", ("update_tags", "200")): 2,
        ("webhook_requests_total", ("update_tags", "502")): 1,
        ("webhook_request_duration_seconds_count", ("test",)): 3,
        ("webhook_request_duration_seconds_count", ("update_tags",)): 6,
        ("webhook_request_duration_seconds_count", ("unknown",)): 1,
        ("webhook_request_duration_seconds_count", ("update",)): 1,
        ("webhook_refused_requests_total", ("invalid_key",)): 3,
        ("webhook_refused_requests_total", ("missing_key",)): 1,
        ("webhook_refused_requests_total", ("too_large",)): 1,
        ("webhook_deliveries_processed_total", ("test", "succeeded")): 3,
        ("webhook_deliveries_processed_total", ("update_tags", "succeeded")): 2,
        ("webhook_deliveries_processed_total", ("update_tags", "failed")): 1,
    }
    attempts = customerio_attempts(cio_emulator)
    assert attempts[("app", "503")] == 2  # the first attempt and its one retry (CUSTOMERIO_MAX_RETRIES=1)
    assert attempts[("app", "200")] >= 2
    for (api, status), count in attempts.items():
        expected[("customerio_api_requests_total", (api, status))] = count

    def moved(after: dict) -> dict:
        return {
            (name, labels): value(after, name, **label_names(name, labels))
            - value(before, name, **label_names(name, labels))
            for name, labels in expected
        }

    # The worker counts its outcomes once their transaction commits: a moment after the rows say so.
    wait_for(lambda: moved(scrape(url, via_proxy)) == expected, timeout=30, what="the counts")
    final = scrape(url, via_proxy)
    assert moved(final) == expected

    # Nothing else moved: every other counter sample is where it was.
    changed = {
        key
        for key, number in counters_of(final).items()
        if number != before.get(key, 0.0) and not _expected_key(key, expected)
    }
    assert changed == set(), changed

    # The queue's figures are the database's, whichever worker answers.
    assert value(final, "webhook_deliveries_waiting") == 0
    assert value(final, "worker_last_heartbeat_timestamp_seconds") > time.time() - 60

    # Scrapes through either worker (and through their replacements) never go backwards.
    previous = counters_of(final)
    for _ in range(14):
        current = counters_of(scrape(url, via_proxy))
        assert {key: number for key, number in previous.items() if current.get(key, 0.0) < number} == {}
        previous = current

    # Replaced workers' counts were folded in; the worker process counts in its own file.
    names = {path.name for path in metrics_dir.glob("*.db")}
    assert "counter_archive.db" in names
    assert f"counter_{worker.pid}.db" in names


FIXTURE_EMAILS = [person["email"] for person in FIXTURE["customers"]]
LABELS = {
    "webhook_requests_total": ("action", "status"),
    "webhook_request_duration_seconds_count": ("action",),
    "webhook_refused_requests_total": ("reason",),
    "webhook_deliveries_processed_total": ("action", "outcome"),
    "customerio_api_requests_total": ("api", "status"),
}


def label_names(name: str, labels: tuple) -> dict:
    return dict(zip(LABELS[name], labels, strict=True))


def _expected_key(key, expected: dict) -> bool:
    name, labels = key
    base = name.removesuffix("_bucket").removesuffix("_sum")
    if base != name:  # a histogram's buckets and sum move with its count
        return any(entry[0] == f"{base}_count" for entry in expected)
    return any(entry[0] == name and frozenset(label_names(name, entry[1]).items()) == labels for entry in expected)


def test_without_a_directory_gunicorn_gives_its_workers_a_private_one(
    cio_emulator, subprocess_env, production_helpers, tmp_path, access_key
):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = production_helpers.production_env(
        tmp_path, subprocess_env["DATABASE_URL"], cio_emulator.url, METRICS_TOKEN=TOKEN, TMPDIR=str(temporary)
    )
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    processes = production_helpers.Processes(tmp_path)
    try:
        url = production_helpers.start_gunicorn(
            processes, env, WEB_CONCURRENCY="2", GUNICORN_CMD_ARGS="--max-requests 3", GUNICORN_ACCESS_LOG=""
        )
        headers = {**production_helpers.VIA_PROXY, "Content-Type": "application/json"}
        before = value(scrape(url, production_helpers.VIA_PROXY), "webhook_requests_total", action="test", status="200")
        for _ in range(6):
            answer = requests.post(f"{url}/?wpf_action=test&access_key={access_key}", data="{}", headers=headers)
            assert answer.status_code == 200
        after = value(scrape(url, production_helpers.VIA_PROXY), "webhook_requests_total", action="test", status="200")
        private = list(temporary.glob("metrics-*"))
    finally:
        stopped = processes.stop_all()

    assert stopped == {"gunicorn": 0}, processes.output("gunicorn")
    # Six answers from several worker processes (each replaced after 3 requests), added up.
    assert after - before == 6
    assert len(private) == 1
    assert not private[0].exists()  # removed when gunicorn stopped
