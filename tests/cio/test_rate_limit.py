"""The shared App API rate limiter: within one process and across processes."""

import subprocess
import sys
import time
import types
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connection

from cio import ratelimit
from cio.errors import DeadlineExceeded
from cio.ratelimit import SharedRateLimiter


def max_in_any_window(times, window=1.0):
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.django_db
def test_the_limiter_spaces_requests_and_honours_a_deadline():
    limiter = SharedRateLimiter("unit-test", rate=3)
    waits = [limiter.acquire() for _ in range(3)]
    assert all(w < 0.5 for w in waits)
    with pytest.raises(DeadlineExceeded):
        limiter.acquire(deadline=time.monotonic() + 0.2)
    assert limiter.acquire() > 0.5


def skewed_clock(offset: float) -> types.SimpleNamespace:
    """The `time` module as the limiter sees it on a host whose clock is `offset` seconds off."""
    return types.SimpleNamespace(time=lambda: time.time() + offset, monotonic=time.monotonic, sleep=time.sleep)


@pytest.mark.concurrency
@pytest.mark.django_db
@pytest.mark.parametrize(("first_clock", "second_clock"), [(0.0, 30.0), (-30.0, 0.0)], ids=["ahead", "behind"])
def test_hosts_whose_clocks_disagree_still_share_one_limit_on_postgresql(monkeypatch, first_clock, second_clock):
    """Several worker hosts share the limit through PostgreSQL. A host whose clock is 30 s ahead of another's must
    not see that host's grants as long gone and take a full window's worth of requests on top of them."""
    if connection.vendor != "postgresql":
        pytest.skip("several hosts share the limit on PostgreSQL only; SQLite serves one host, on its own clock")
    name = f"skew-{uuid.uuid4().hex[:8]}"  # the limiter commits on its own connection: a name of this test's own

    # A 5-second window (shorter than the skew), so that a slow machine cannot let the grants expire meanwhile.
    monkeypatch.setattr(ratelimit, "time", skewed_clock(first_clock))
    first_host = ratelimit.SharedRateLimiter(name, rate=3, window=5.0)
    for _ in range(3):
        first_host.acquire()

    monkeypatch.setattr(ratelimit, "time", skewed_clock(second_clock))
    second_host = ratelimit.SharedRateLimiter(name, rate=3, window=5.0)
    with pytest.raises(DeadlineExceeded):
        second_host.acquire(deadline=time.monotonic() + 0.3)


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_two_processes_share_the_limit_and_never_see_a_429(emulator_env, cio_emulator):
    cio_emulator.add_customer(email="ann@example.com", segments=[])
    script = (
        "import django; django.setup()\n"
        "from cio import get_client\n"
        "client = get_client()\n"
        "for _ in range(15): client.get_segments('ann@example.com')\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], cwd=django_settings.BASE_DIR, env=emulator_env)
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    calls = cio_emulator.requests("/v1/")
    assert len(calls) == 30
    assert [c["status"] for c in calls].count(429) == 0
    assert max_in_any_window([c["time"] for c in calls]) <= 10


@pytest.mark.django_db
def test_a_request_sent_late_is_counted_from_when_it_left():
    """A thread kept from the CPU between its grant and its request (a busy host) moves its stamp to when the request
    left: the window counts it from then, so that it and the requests granted a window later never reach Customer.io
    within one second."""
    limiter = SharedRateLimiter(f"late-{uuid.uuid4().hex[:8]}", rate=1, window=5.0)
    limiter.acquire()
    stamped_at = ratelimit._local.grant[2]
    limiter.sent(stamped_at + 3.0)  # left 3 s after its grant
    assert limiter._try_grant() > 7.0  # 5 s from when it left, not from its grant

    on_time = SharedRateLimiter(f"on-time-{uuid.uuid4().hex[:8]}", rate=1, window=5.0)
    on_time.acquire()
    on_time.sent(time.monotonic())
    assert 4.0 < on_time._try_grant() <= 5.0
