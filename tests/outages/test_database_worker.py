"""A worker whose database stops in the middle of a batch: it keeps running, waits, reconnects, releases the
deliveries its cut-off task held and processes them — every one succeeds, none is left `processing`."""

import signal
import sys
import time
import uuid

import pytest

from .conftest import query, timed, wait_for

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

PEOPLE = 12
TASKS = "django_tasks_database_dbtaskresult"
SEGMENTS = [{"id": 1, "name": "Members", "type": "manual"}, {"id": 2, "name": "Buyers", "type": "manual"}]


def fixture():
    customers = [
        {"email": f"person{n}@example.com", "id": f"p{n}", "attributes": {}, "segments": [1 + n % 2]}
        for n in range(PEOPLE)
    ]
    return {"segments": SEGMENTS, "customers": customers}


MAKE_USERS = f"""
from users.models import Role, User
role = Role.get_default()
for n in range({PEOPLE}):
    email = f"person{{n}}@example.com"
    User.objects.create(username=email, email=email, email_normalized=email, role=role)
"""


def statuses(database_url: str) -> dict[str, int]:
    rows = query(database_url, "SELECT status, count(*) FROM webhooks_webhookdelivery GROUP BY status")
    return dict(rows)


def test_a_worker_rides_out_a_database_restart_and_finishes_its_work(
    site_on_local_postgres, local_postgres, production_helpers, cio_emulator
):
    site = site_on_local_postgres
    cio_emulator.reset(fixture())
    production_helpers.manage(site.env, "shell", "-c", MAKE_USERS)
    url = production_helpers.start_gunicorn(site.processes, site.env, WEB_CONCURRENCY="1", GUNICORN_THREADS="4")
    # Customer.io slow to answer, so that the database stops while the worker holds a claimed batch.
    cio_emulator.set_faults(latency_ms=2000, path_prefix="/v1/")
    for n in range(PEOPLE):
        status, _ = timed(
            "POST",
            f"{url}/?wpf_action=update_tags&access_key={site.key}&async=true",
            json={"email": f"person{n}@example.com"},
            headers={**production_helpers.VIA_PROXY, "X-CIO-Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 200
    worker = site.processes.start(
        "worker", [sys.executable, "manage.py", "webhook_worker", "--worker-id", "outage-worker"], site.env
    )
    wait_for(lambda: statuses(site.database_url).get("processing"), 90, "the worker to claim the batch")
    wait_for(lambda: cio_emulator.requests("/v1/"), 60, "the worker to call Customer.io", every=0.2)

    local_postgres.stop()
    time.sleep(4)  # the worker's calls come back meanwhile, and its writes fail
    assert worker.poll() is None, site.processes.output("worker")
    local_postgres.start()
    cio_emulator.set_faults()

    wait_for(lambda: statuses(site.database_url) == {"succeeded": PEOPLE}, 120, "every delivery to succeed")
    assert worker.poll() is None  # the same worker, never restarted
    running = query(
        site.database_url, "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status = 'RUNNING'"
    )
    assert running == [(0,)]  # the cut-off task ended, not left running
    loaded = query(
        site.database_url,
        "SELECT user_id, count(*) FROM users_activitylog WHERE message LIKE 'Loaded tags%%' GROUP BY user_id",
    )
    assert sorted(n for _, n in loaded) == [1] * PEOPLE  # each person's tags loaded once: nothing processed twice
    # The worker's own words: one line when the database went, one when it came back, and the release.
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    log = site.processes.output("worker")
    assert log.count("The database is unavailable") == 1, log
    assert "worker outage-worker waits for it" in log, log
    assert log.count("The database is back") == 1, log
    assert "queued again" in log, log
    assert "couldn't get a connection" not in log.split("The database is unavailable")[0], log
