"""Redis stopped under a running site: webhooks are answered as before (never a 500), refused requests are still
throttled — per process while Redis is away — a settings change still reaches the web within seconds, and the App
API limit holds across processes (it lives in the database). Redis started again, empty: shared again."""

import re
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings

from settings_app.models import WebhookSettings

from .conftest import timed, wait_for

pytestmark = [pytest.mark.concurrency, pytest.mark.slow]

LIMIT = 5  # WEBHOOK_REFUSED_PER_MINUTE for these tests


def max_in_any_window(times, window=1.0):
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def same_minute_ahead(seconds: float = 10) -> None:
    """Refusals are counted per minute: start a burst with time left in the minute, so that it is counted in one."""
    if time.time() % 60 > 60 - seconds:
        time.sleep(61 - time.time() % 60)


def refused_burst(site_url, via_proxy, address: str, count: int) -> list:
    same_minute_ahead()
    headers = {**via_proxy, "X-Forwarded-For": address}
    return [
        timed("POST", f"{site_url}/?wpf_action=update_tags&access_key=wrong", headers=headers)[0] for _ in range(count)
    ]


def accepted(site_url, key, via_proxy) -> tuple[object, float]:
    return timed(
        "POST",
        f"{site_url}/?wpf_action=update_tags&access_key={key}&async=true",
        json={"email": "nobody@example.com"},
        headers=via_proxy,
    )


def test_without_redis_webhooks_are_answered_and_refusals_throttled_per_process(
    local_redis, subprocess_env, production_helpers, cio_emulator, tmp_path
):
    via_proxy = production_helpers.VIA_PROXY
    env = production_helpers.production_env(
        tmp_path,
        subprocess_env["DATABASE_URL"],
        cio_emulator.url,
        REDIS_URL=local_redis.url,
        REDIS_RETRY_SECONDS="1",
        WEBHOOK_REFUSED_PER_MINUTE=str(LIMIT),
    )
    row = WebhookSettings.load()
    processes = production_helpers.Processes(tmp_path)
    try:
        url = production_helpers.start_gunicorn(processes, env, WEB_CONCURRENCY="1", GUNICORN_THREADS="4")
        assert accepted(url, row.access_key, via_proxy)[0] == 200
        assert refused_burst(url, via_proxy, "203.0.113.1", LIMIT + 2) == [403] * LIMIT + [429] * 2

        local_redis.stop()
        status, seconds = accepted(url, row.access_key, via_proxy)
        assert status == 200 and seconds < 4
        # Counted in the process's own memory now: the limit applies per process, from zero.
        assert refused_burst(url, via_proxy, "203.0.113.2", LIMIT + 2) == [403] * LIMIT + [429] * 2
        # A new key saved meanwhile (as the admin's Save does) reaches the web through the database.
        row.access_key = "k" * 43
        row.save()
        wait_for(lambda: accepted(url, row.access_key, via_proxy)[0] == 200, 30, "the new key to be accepted")

        local_redis.start()  # empty, as after a restart

        def answered_with_redis():
            assert accepted(url, row.access_key, via_proxy)[0] == 200
            return "Redis is back" in processes.output("gunicorn")

        wait_for(answered_with_redis, 30, "the web to use Redis again", every=1)
        assert refused_burst(url, via_proxy, "203.0.113.3", LIMIT + 1) == [403] * LIMIT + [429]
    finally:
        processes.stop_all()
    log = processes.output("gunicorn")
    assert log.count("Redis is unavailable") == 1, log
    assert log.count("Redis is back") == 1, log
    assert not re.search(r'" 50[0-9] ', log), log  # no 5xx in the access log
    assert "Traceback" not in log, log


def test_the_app_api_limit_holds_across_processes_without_redis(local_redis, emulator_env, cio_emulator):
    """The limiter keeps its state in the database, not in Redis: three processes calling the App API with Redis
    stopped together stay within 10 requests in any second, and Customer.io never answers 429."""
    cio_emulator.add_customer(email="ann@example.com", segments=[])
    local_redis.stop()
    env = {**emulator_env, "REDIS_URL": local_redis.url}
    script = (
        "import django; django.setup()\n"
        "from cio import get_client\n"
        "client = get_client()\n"
        "for _ in range(12): client.get_segments('ann@example.com')\n"
    )
    callers = [
        subprocess.Popen([sys.executable, "-c", script], cwd=django_settings.BASE_DIR, env=env) for _ in range(3)
    ]
    for caller in callers:
        assert caller.wait(timeout=120) == 0
    calls = cio_emulator.requests("/v1/")
    assert len(calls) == 36
    assert [call["status"] for call in calls].count(429) == 0
    assert max_in_any_window([call["time"] for call in calls]) <= 10
