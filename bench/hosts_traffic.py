"""bench/hosts.py's traffic: webhooks sent the way Customer.io sends them — each delivery with its own idempotency key,
retried with the same key after Retry-After (1 s without one) until answered 200 — spread over the web hosts the way
a proxy spreads them (another host at each attempt), and /healthz probed on every host. Every answer is recorded."""

import itertools
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

# What the TLS proxy in front of each web host adds (the site trusts it from 127.0.0.1): scripts/production_site.py.
VIA_PROXY = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}


@dataclass(frozen=True)
class Answer:
    kind: str  # "queued", "sync" or "healthz"
    host: int
    started: float  # time.time()
    seconds: float
    status: int | str  # the HTTP status, or the exception's class name when no answer came


class Traffic:
    def __init__(self, hosts: list[str], access_key: str, deadline: float):
        self.hosts = hosts
        self.key = access_key
        self.deadline = deadline  # time.monotonic(): no delivery is retried past it
        self.answers: list[Answer] = []
        self.answered_200: dict[str, set[int]] = {"queued": set(), "sync": set()}
        self.given_up: dict[str, set[int]] = {"queued": set(), "sync": set()}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.stopped = threading.Event()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def deliver(self, kind: str, person: int) -> None:
        """One delivery, until answered 200 (or the deadline)."""
        key = uuid.uuid4().hex
        query = f"?wpf_action=update_tags&access_key={self.key}" + ("&async=true" if kind == "queued" else "")
        for attempt in itertools.count():
            if time.monotonic() > self.deadline:
                with self._lock:
                    self.given_up[kind].add(person)
                return
            host = (person + attempt) % len(self.hosts)
            started, began = time.time(), time.monotonic()
            retry_after = None
            try:
                response = self._session().post(
                    f"{self.hosts[host]}/{query}",
                    json={"email": f"person{person}@example.com"},
                    headers={**VIA_PROXY, "X-CIO-Idempotency-Key": key},
                    timeout=30,
                )
                status, retry_after = response.status_code, response.headers.get("Retry-After")
            except requests.RequestException as error:
                status = type(error).__name__
            self._record(Answer(kind, host, started, time.monotonic() - began, status))
            if status == 200:
                with self._lock:
                    self.answered_200[kind].add(person)
                return
            time.sleep(min(5.0, float(retry_after)) if retry_after and retry_after.isdigit() else 1.0)

    def send_all(self, kind: str, people: list[int], threads: int) -> threading.Thread:
        """Deliver to every person from `threads` threads, in the background."""

        def run():
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=kind) as pool:
                list(pool.map(lambda person: self.deliver(kind, person), people))

        thread = threading.Thread(target=run, name=f"send-{kind}", daemon=True)
        thread.start()
        return thread

    def probe_health(self, every: float = 0.5) -> threading.Thread:
        """GET /healthz on every host every `every` seconds until stopped."""

        def run():
            session = requests.Session()
            while not self.stopped.wait(every) and time.monotonic() < self.deadline:
                for host, url in enumerate(self.hosts):
                    started, began = time.time(), time.monotonic()
                    try:
                        status = session.get(f"{url}/healthz", headers=VIA_PROXY, timeout=30).status_code
                    except requests.RequestException as error:
                        status = type(error).__name__
                    self._record(Answer("healthz", host, started, time.monotonic() - began, status))

        thread = threading.Thread(target=run, name="healthz", daemon=True)
        thread.start()
        return thread

    def between(self, start: float, end: float, kinds=("queued", "sync", "healthz")) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.started <= end and a.kind in kinds]


def by_status(answers: list[Answer]) -> str:
    counts = Counter(answer.status for answer in answers)
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items(), key=lambda item: str(item[0]))) or "none"


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most of `times` within any `window` seconds (a sliding window, not calendar seconds)."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
