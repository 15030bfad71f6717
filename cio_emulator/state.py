"""Everything the emulator knows (people and segments, the request log, the rate window, faults, settings), behind
one lock."""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .faults import EmulatorSettings, FaultDecision, FaultPlan
from .fixtures import Fixture, parse_customer, parse_fixture, parse_segment
from .people import People
from .records import EmulatorInputError, EventRequest, IdentifyRequest, PersonRef, non_negative, require_int

RATE_WINDOW_SECONDS = 1.0


class EmulatorState:
    """Everything the emulator knows, behind one lock: people, segments, the request log, the rate limiter's window,
    the fault plan and the settings. Safe to use from any thread."""

    def __init__(
        self,
        rate_limit: int | None = 10,
        latency_ms: float = 0,
        retry_after_header: bool = True,
        log_bodies: bool = True,
    ):
        self._lock = threading.Lock()
        # Off, the request log keeps each request's method, path, query, status and time but not its body: a
        # benchmark of a million people would otherwise hold every batch it was sent.
        self._log_bodies = log_bodies
        self._settings = EmulatorSettings(rate_limit=0, retry_after_header=True, latency_ms=0.0)
        self.update_settings(
            {"rate_limit": rate_limit, "retry_after_header": bool(retry_after_header), "latency_ms": latency_ms}
        )
        self._clear_locked()

    def _clear_locked(self) -> None:
        self._people = People()
        self._log: list[dict] = []
        self._admitted: collections.deque[float] = collections.deque()  # monotonic admission times
        self._faults = FaultPlan()
        self._random = random.Random()

    # ---- fixtures and control-side upserts

    def reset(self, fixture: Mapping | None = None) -> dict:
        """Forget people, segments, the log, the faults and the rate window (settings stay); then load `fixture`."""
        parsed = parse_fixture(fixture) if fixture is not None else Fixture()
        with self._lock:
            People().check_segment_references(parsed)
            self._clear_locked()
            self._people.apply_fixture(parsed, int(time.time()))
            return self._people.counts()

    def load_fixture(self, fixture: Mapping) -> dict:
        """Add a fixture to what is there: segments and people are upserted (people matched by cio_id, id, email).

        A conflict (identifiers of two different people) stops the load at that person; earlier ones stay applied.
        """
        parsed = parse_fixture(fixture)
        with self._lock:
            self._people.check_segment_references(parsed)
            self._people.apply_fixture(parsed, int(time.time()))
            return self._people.counts()

    def load_customers(self, customers: Iterable[Mapping], chunk_size: int = 10_000) -> dict:
        """Add many people (fixture-shaped customers, from any iterable: a generator of a million, say) to what is
        there, as load_fixture does, a chunk at a time: the whole list never has to exist at once, and requests are
        answered between chunks."""
        chunk: list[Mapping] = []
        for customer in customers:
            chunk.append(customer)
            if len(chunk) >= chunk_size:
                self.load_fixture({"customers": chunk})
                chunk = []
        return self.load_fixture({"customers": chunk})

    def upsert_segment(self, segment: Mapping) -> dict:
        spec = parse_segment(segment, "segment")
        with self._lock:
            self._people.check_segment_references(Fixture(segments=(spec,)))
            return self._people.upsert_segment(spec, int(time.time())).app_json()

    def upsert_customer(self, customer: Mapping) -> dict:
        spec = parse_customer(customer, "customer")
        with self._lock:
            self._people.check_segment_references(Fixture(customers=(spec,)))
            return self._people.upsert_customer(spec, int(time.time())).stored_json()

    def customer(self, identifier: str) -> dict | None:
        """The stored customer named by an email, an id or cio_<cio_id>, raw attribute values included."""
        with self._lock:
            person = self._people.find(PersonRef.from_path(identifier))
            return person.stored_json() if person else None

    # ---- Track API

    def apply_operations(self, operations: Iterable[IdentifyRequest | EventRequest]) -> list[str]:
        """Apply identifies and events in order (one lock hold, so a batch is applied atomically); one outcome each."""
        received_at = time.time()
        now = int(received_at)
        with self._lock:
            return [
                self._people.identify(operation, now)
                if isinstance(operation, IdentifyRequest)
                else self._people.track_event(operation, received_at)
                for operation in operations
            ]

    def events(self, identifier: str, name: str | None = None) -> list[dict] | None:
        """The events recorded for the person named by an email, an id or cio_<cio_id>, oldest first (only those
        called `name` if given); None when there is no such person."""
        with self._lock:
            return self._people.events(PersonRef.from_path(identifier), name)

    def all_events(self, name: str | None = None) -> list[dict]:
        """Every event recorded, oldest first, each with its person's identifiers under "person"."""
        with self._lock:
            return self._people.all_events(name)

    def change_segment_members(self, segment_id: int, refs: Iterable[PersonRef], add: bool) -> str | None:
        """Track API add_customers / remove_customers (see People.change_segment_members)."""
        now = int(time.time())
        with self._lock:
            return self._people.change_segment_members(segment_id, refs, add, now)

    # ---- App API

    def app_segments(self) -> list[dict]:
        with self._lock:
            return self._people.app_segments()

    def app_segment(self, segment_id: int) -> dict | None:
        with self._lock:
            return self._people.app_segment(segment_id)

    def app_segment_count(self, segment_id: int) -> int | None:
        with self._lock:
            return self._people.app_segment_count(segment_id)

    def app_customer(self, ref: PersonRef) -> dict | None:
        with self._lock:
            return self._people.app_customer(ref)

    def app_customers(self, refs: Iterable[PersonRef]) -> list[dict]:
        """The people that exist among `refs`, each once, in the order asked."""
        with self._lock:
            return self._people.app_customers(refs)

    def app_customer_segments(self, ref: PersonRef) -> list[dict] | None:
        with self._lock:
            return self._people.app_customer_segments(ref)

    def app_membership(self, segment_id: int, limit: int, start: str | None) -> dict | None:
        """One page of a segment's members in a stable order; `next` is "" on the last page."""
        with self._lock:
            return self._people.app_membership(segment_id, limit, start)

    # ---- request log

    def record_request(self, method: str, path: str, query: dict, body: Any, arrived_at: float) -> dict:
        body = body if self._log_bodies else None
        entry = {"method": method, "path": path, "query": query, "body": body, "status": None, "time": arrived_at}
        with self._lock:
            self._log.append(entry)
        return entry

    def record_status(self, entry: dict, status: int | None) -> None:
        with self._lock:
            entry["status"] = status

    def requests(self, since: int = 0, path_prefix: str | None = None, method: str | None = None) -> list[dict]:
        """Copies of the logged API requests, oldest first, from index `since` of the current log."""
        method = method.upper() if method else None
        with self._lock:
            return [
                dict(entry)
                for entry in self._log[since:]
                if (path_prefix is None or entry["path"].startswith(path_prefix))
                and (method is None or entry["method"] == method)
            ]

    def count_requests(self, since: int = 0, path_prefix: str | None = None) -> int:
        """How many logged requests from index `since` on have a path starting with `path_prefix` (no copies)."""
        with self._lock:
            entries = self._log[since:] if since else self._log
            if path_prefix is None:
                return len(entries)
            return sum(1 for entry in entries if entry["path"].startswith(path_prefix))

    def clear_requests(self) -> int:
        with self._lock:
            cleared = len(self._log)
            self._log = []
            return cleared

    def status(self) -> dict:
        with self._lock:
            return {**self._people.counts(), "requests": len(self._log)}

    # ---- rate limiting, faults, settings

    def admit_app_request(self) -> bool:
        """Whether an App API request may proceed now; admitted requests fill the trailing one-second window."""
        with self._lock:
            limit = self._settings.rate_limit
            if not limit:
                return True
            now = time.monotonic()
            while self._admitted and self._admitted[0] <= now - RATE_WINDOW_SECONDS:
                self._admitted.popleft()
            if len(self._admitted) >= limit:
                return False
            self._admitted.append(now)
            return True

    def set_faults(self, plan: FaultPlan | Mapping) -> dict:
        plan = plan if isinstance(plan, FaultPlan) else FaultPlan.from_json(plan)
        with self._lock:
            self._faults = plan
            self._random = random.Random(plan.seed)
            return plan.as_json()

    def faults(self) -> dict:
        with self._lock:
            return self._faults.as_json()

    def draw_fault(self, method: str, path: str) -> FaultDecision | None:
        with self._lock:
            plan = self._faults
            if not plan.matches(method, path):
                return None
            latency = plan.latency_ms / 1000
            # random() < 1.0 always holds, so a rate of 1 faults every matching request.
            if plan.timeout_rate and self._random.random() < plan.timeout_rate:
                return FaultDecision(latency, hang_up_after_seconds=plan.timeout_seconds)
            if plan.fail_rate and self._random.random() < plan.fail_rate:
                return FaultDecision(latency, fail_status=plan.fail_status)
            return FaultDecision(latency) if latency else None

    def fault_rejects(self, request: IdentifyRequest | EventRequest) -> bool:
        """Whether the fault plan refuses this batch operation (see FaultPlan.reject_identifiers)."""
        with self._lock:
            return self._faults.matches("POST", "/api/v2/batch") and self._faults.rejects(request)

    def settings(self) -> dict:
        with self._lock:
            return self._settings.as_json()

    def update_settings(self, changes: Mapping) -> dict:
        if not isinstance(changes, Mapping):
            raise EmulatorInputError("settings must be an object")
        unknown = set(changes) - {"rate_limit", "retry_after_header", "latency_ms"}
        if unknown:
            raise EmulatorInputError(f"unknown settings: {sorted(unknown)}")
        validated = {}
        if "rate_limit" in changes:
            rate_limit = changes["rate_limit"]
            validated["rate_limit"] = 0 if rate_limit is None else require_int(rate_limit, "rate_limit")
            if validated["rate_limit"] < 0:
                raise EmulatorInputError("rate_limit must be >= 0 (0 or null disables it)")
        if "retry_after_header" in changes:
            if not isinstance(changes["retry_after_header"], bool):
                raise EmulatorInputError("retry_after_header must be true or false")
            validated["retry_after_header"] = changes["retry_after_header"]
        if "latency_ms" in changes:
            validated["latency_ms"] = non_negative(changes["latency_ms"], "latency_ms")
        with self._lock:
            for name, value in validated.items():
                setattr(self._settings, name, value)
            return self._settings.as_json()

    def latency_seconds(self) -> float:
        with self._lock:
            return self._settings.latency_ms / 1000

    def retry_after_header(self) -> bool:
        with self._lock:
            return self._settings.retry_after_header
