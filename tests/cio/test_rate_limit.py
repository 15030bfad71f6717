"""The shared App API rate limiter: within one process and across processes."""

import dataclasses
import random
import subprocess
import sys
import threading
import time
import types
import uuid

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection, connections

from cio import ratelimit
from cio.errors import DeadlineExceeded
from cio.ratelimit import SharedRateLimiter
from cio.transport import ClientConfig, Transport


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
    limiter = SharedRateLimiter(f"unit-test-{uuid.uuid4().hex[:8]}", rate=3)

    def answered_at_once():
        waited = limiter.acquire()
        limiter.finished(time.monotonic())
        return waited

    waits = [answered_at_once() for _ in range(3)]
    assert all(w < 0.5 for w in waits)
    with pytest.raises(DeadlineExceeded):
        limiter.acquire(deadline=time.monotonic() + 0.2)
    assert 0.5 < answered_at_once() < 1.5


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
def test_a_request_counts_from_when_its_answer_came():
    """A thread kept from the CPU between its grant and its request (a busy host) reaches Customer.io late; only its
    answer's time is surely no earlier than its arrival, so the window counts it from then."""
    limiter = SharedRateLimiter(f"late-{uuid.uuid4().hex[:8]}", rate=1, window=5.0)
    limiter.acquire()
    stamped_at = ratelimit._local.grant[2]
    limiter.finished(stamped_at + 3.0)  # answered 3 s after its grant
    assert limiter._try_grant() > 7.0  # 5 s from the answer, not from the grant

    on_time = SharedRateLimiter(f"on-time-{uuid.uuid4().hex[:8]}", rate=1, window=5.0)
    on_time.acquire()
    on_time.finished(time.monotonic())
    assert 4.0 < on_time._try_grant() <= 5.0


@pytest.mark.django_db
def test_requests_in_flight_hold_their_slots_until_answered():
    """However long ago they were granted, requests still waiting for their answers could reach Customer.io at any
    moment: while `rate` of them are in flight no grant is made, and the next one comes a window after an answer."""
    limiter = SharedRateLimiter(f"in-flight-{uuid.uuid4().hex[:8]}", rate=2, window=0.5)
    limiter.acquire()
    first = ratelimit._local.grant
    limiter.acquire()
    second = ratelimit._local.grant
    time.sleep(0.6)  # a window after both grants: by grant times both slots would be free again
    assert limiter._try_grant() == pytest.approx(0.5, abs=0.01)  # a window at least: look again then

    ratelimit._local.grant = first
    limiter.finished(time.monotonic())
    assert 0.4 < limiter._try_grant() <= 0.5  # the answered one frees its slot a window after its answer
    ratelimit._local.grant = second
    limiter.finished(time.monotonic())


@pytest.mark.django_db
def test_a_request_whose_answer_never_comes_stops_holding_its_slot():
    """A process killed mid-request never reports its answer: its grant counts as in flight only for as long as a
    request may take."""
    limiter = SharedRateLimiter(f"killed-{uuid.uuid4().hex[:8]}", rate=1, window=0.2, longest_request=0.3)
    limiter.acquire()
    ratelimit._local.grant = None  # the process that held it is gone
    assert limiter._try_grant() > 0
    time.sleep(0.55)  # longest_request, then a window
    assert limiter._try_grant() == 0.0


@pytest.mark.django_db
def test_a_failed_attempt_frees_its_slot_like_an_answered_one():
    """The transport reports every attempt's end, answered or not: an attempt cut short by its deadline or a
    refused connection does not leave its slot held as in flight."""
    config = dataclasses.replace(
        ClientConfig.from_settings(), app_api_url="http://127.0.0.1:9", max_retries=0, app_api_key="key"
    )  # nothing listens on port 9: the connection is refused
    transport = Transport(config)
    transport.limiter = SharedRateLimiter(f"failed-{uuid.uuid4().hex[:8]}", rate=1, window=0.2)
    with pytest.raises(Exception, match="connection failed"):
        transport._app("GET", "/v1/segments")
    time.sleep(0.25)
    assert transport.limiter._try_grant() == 0.0


@pytest.mark.django_db
def test_an_attempt_whose_deadline_passed_after_its_grant_frees_its_slot(monkeypatch):
    transport = Transport(dataclasses.replace(ClientConfig.from_settings(), app_api_key="key"))
    transport.limiter = SharedRateLimiter(f"deadline-{uuid.uuid4().hex[:8]}", rate=1, window=0.2)
    deadline = time.monotonic() + 5
    # The grant came just as the deadline passed: the attempt is given up before it is sent.
    monkeypatch.setattr(transport.limiter, "acquire", lambda deadline: SharedRateLimiter.acquire(transport.limiter))
    monkeypatch.setattr(transport, "_timeout", lambda *args: (_ for _ in ()).throw(DeadlineExceeded("passed")))
    with pytest.raises(DeadlineExceeded):
        transport._app("GET", "/v1/segments", deadline=deadline)
    time.sleep(0.25)
    assert transport.limiter._try_grant() == 0.0


class LateSession:
    """requests.Session's part the transport uses, for threads that wait (for the CPU, say) a random moment after
    their grant before the request reaches "Customer.io", which notes when each arrived and answers at once."""

    def __init__(self, arrivals: list):
        self.arrivals = arrivals
        self.random = random.Random(25)

    def request(self, method, url, **kwargs):
        time.sleep(self.random.choice([0.0, 0.0, 0.0, 0.15]))
        self.arrivals.append(time.monotonic())
        answer = requests.Response()
        answer.status_code, answer._content = 200, b"{}"
        return answer


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_requests_that_leave_late_still_arrive_at_most_rate_a_second():
    """The case grant times got wrong: of requests granted on time, some reach Customer.io 0.15 s late, and by then
    the next grants were made as if they had arrived. Counting each from its answer keeps every second at the rate."""
    arrivals: list[float] = []
    transport = Transport(dataclasses.replace(ClientConfig.from_settings(), app_api_key="key"))
    transport.session = LateSession(arrivals)
    transport.limiter = SharedRateLimiter(f"late-arrivals-{uuid.uuid4().hex[:8]}", rate=5)

    def sender():
        for _ in range(6):
            transport._app("GET", "/v1/segments")
        connections.close_all()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(arrivals) == 24
    assert max_in_any_window(arrivals) <= 5
