"""The web with its database stopped: webhooks, /healthz and pages answer 503 within Customer.io's 4 s (never a 500,
never a hang), and the same gunicorn answers 200 again once the database is back — no restart."""

import uuid

import pytest

from .conftest import query, timed, wait_for

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

# Customer.io gives up on a webhook after 4 s and retries it.
CUSTOMERIO_WAITS = 4.0


def webhook(site_url, key, via_proxy, *, queued: bool, email: str = "nobody@example.com"):
    suffix = "&async=true" if queued else ""
    return timed(
        "POST",
        f"{site_url}/?wpf_action=update_tags&access_key={key}{suffix}",
        json={"email": email},
        headers={**via_proxy, "X-CIO-Idempotency-Key": uuid.uuid4().hex},
    )


def admin_page(site_url, via_proxy):
    # A session cookie makes the admin read its session from the database.
    session = {"Cookie": f"sessionid={'s' * 32}"}
    return timed("GET", f"{site_url}/admin/", headers={**via_proxy, **session}, allow_redirects=False)


def test_the_web_answers_503_while_the_database_is_down_and_recovers_without_a_restart(
    site_on_local_postgres, local_postgres, production_helpers
):
    site = site_on_local_postgres
    via_proxy = production_helpers.VIA_PROXY
    url = production_helpers.start_gunicorn(site.processes, site.env, WEB_CONCURRENCY="1", GUNICORN_THREADS="4")
    gunicorn = site.processes.running["gunicorn"]
    assert webhook(url, site.key, via_proxy, queued=True)[0] == 200
    assert timed("GET", f"{url}/healthz", headers=via_proxy)[0] == 200

    local_postgres.stop()
    answers = []
    for _ in range(3):
        answers.append(("queued webhook", *webhook(url, site.key, via_proxy, queued=True)))
        answers.append(("synchronous webhook", *webhook(url, site.key, via_proxy, queued=False)))
        answers.append(("/healthz", *timed("GET", f"{url}/healthz", headers=via_proxy)))
        answers.append(("admin page", *admin_page(url, via_proxy)))
    assert [(what, status) for what, status, _ in answers] == [(what, 503) for what, _, _ in answers]
    slowest = max(seconds for _, _, seconds in answers)
    assert slowest < CUSTOMERIO_WAITS, answers

    local_postgres.start()
    wait_for(lambda: webhook(url, site.key, via_proxy, queued=True)[0] == 200, 60, "a webhook answered 200")
    assert timed("GET", f"{url}/healthz", headers=via_proxy)[0] == 200
    assert admin_page(url, via_proxy)[0] == 302  # to the login page: no such session
    assert gunicorn.poll() is None  # the same server, never restarted
    log = site.processes.output("gunicorn")
    assert log.count("Booting worker") == 1, log
    # One line when the database went, one when it came back: not one per request.
    assert log.count("The database is unavailable") == 1, log
    assert log.count("The database is back") == 1, log
    assert "Traceback" not in log and "Internal Server Error" not in log, log
    # What was accepted is there: the first webhook and the one after the outage; nothing answered 503 was stored.
    assert query(site.database_url, "SELECT count(*) FROM webhooks_webhookdelivery")[0][0] >= 2
