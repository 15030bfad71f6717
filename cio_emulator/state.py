"""Everything the emulator knows (people, segments, the request log, the rate window, faults, settings)."""

from __future__ import annotations

import bisect
import collections
import random
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .faults import EmulatorSettings, FaultDecision, FaultPlan
from .fixtures import CustomerSpec, Fixture, SegmentSpec, parse_customer, parse_fixture, parse_segment
from .records import (
    CREATED,
    FAILED,
    SKIPPED,
    UPDATED,
    Customer,
    EmulatorInputError,
    IdentifyRequest,
    IdentityConflict,
    PersonRef,
    Segment,
    decode_cursor,
    encode_cursor,
    non_negative,
    removes_attribute,
    require_int,
    same_identifier,
)

RATE_WINDOW_SECONDS = 1.0


class EmulatorState:
    """Everything the emulator knows, behind one lock: people, segments, the request log, the rate limiter's window,
    the fault plan and the settings. Safe to use from any thread."""

    def __init__(self, rate_limit: int | None = 10, latency_ms: float = 0, retry_after_header: bool = True):
        self._lock = threading.Lock()
        self._settings = EmulatorSettings(rate_limit=0, retry_after_header=True, latency_ms=0.0)
        self.update_settings(
            {"rate_limit": rate_limit, "retry_after_header": bool(retry_after_header), "latency_ms": latency_ms}
        )
        self._clear_locked()

    def _clear_locked(self) -> None:
        self._segments: dict[int, Segment] = {}
        self._customers: dict[int, Customer] = {}  # by sequence number
        self._by_email: dict[str, Customer] = {}  # lower-cased: Customer.io matches emails case-insensitively
        self._by_id: dict[str, Customer] = {}
        self._by_cio_id: dict[str, Customer] = {}
        self._next_seq = 1
        self._log: list[dict] = []
        self._admitted: collections.deque[float] = collections.deque()  # monotonic admission times
        self._faults = FaultPlan()
        self._random = random.Random()

    # ---- fixtures and control-side upserts

    def reset(self, fixture: Mapping | None = None) -> dict:
        """Forget people, segments, the log, the faults and the rate window (settings stay); then load `fixture`."""
        parsed = parse_fixture(fixture) if fixture is not None else Fixture()
        with self._lock:
            self._check_segment_references(parsed, existing=())
            self._clear_locked()
            self._apply_fixture_locked(parsed)
            return self._counts_locked()

    def load_fixture(self, fixture: Mapping) -> dict:
        """Add a fixture to what is there: segments and people are upserted (people matched by cio_id, id, email).

        A conflict (identifiers of two different people) stops the load at that person; earlier ones stay applied.
        """
        parsed = parse_fixture(fixture)
        with self._lock:
            self._check_segment_references(parsed, existing=self._segments)
            self._apply_fixture_locked(parsed)
            return self._counts_locked()

    def upsert_segment(self, segment: Mapping) -> dict:
        spec = parse_segment(segment, "segment")
        with self._lock:
            self._check_segment_references(Fixture(segments=(spec,)), existing=self._segments)
            return self._upsert_segment_locked(spec, int(time.time())).app_json()

    def upsert_customer(self, customer: Mapping) -> dict:
        spec = parse_customer(customer, "customer")
        with self._lock:
            self._check_segment_references(Fixture(customers=(spec,)), existing=self._segments)
            return self._upsert_customer_locked(spec, int(time.time())).stored_json()

    def customer(self, identifier: str) -> dict | None:
        """The stored customer named by an email, an id or cio_<cio_id>, raw attribute values included."""
        with self._lock:
            person = self._find_locked(PersonRef.from_path(identifier))
            return person.stored_json() if person else None

    def _check_segment_references(self, fixture: Fixture, existing: Iterable[int]) -> None:
        known = set(existing)
        for spec in fixture.segments:
            if spec.id not in known and spec.name is None:
                raise EmulatorInputError(f"segment {spec.id} is new and needs a name")
            known.add(spec.id)
        for spec in fixture.customers:
            missing = set(spec.segment_ids or ()) - known
            if missing:
                raise EmulatorInputError(f"customer {spec.email or spec.id} names unknown segments {sorted(missing)}")

    def _apply_fixture_locked(self, fixture: Fixture) -> None:
        now = int(time.time())
        for segment_spec in fixture.segments:
            self._upsert_segment_locked(segment_spec, now)
        for customer_spec in fixture.customers:
            self._upsert_customer_locked(customer_spec, now)

    def _counts_locked(self) -> dict:
        return {"segments": len(self._segments), "customers": len(self._customers)}

    def _upsert_segment_locked(self, spec: SegmentSpec, now: int) -> Segment:
        segment = self._segments.get(spec.id)
        if segment is None:
            segment = Segment(id=spec.id, name=spec.name or "", type="manual", description="", created=now)
            self._segments[spec.id] = segment
        if spec.name is not None:
            segment.name = spec.name
        if spec.type is not None:
            segment.type = spec.type
        if spec.description is not None:
            segment.description = spec.description
        return segment

    def _upsert_customer_locked(self, spec: CustomerSpec, now: int) -> Customer:
        owners = {self._find_locked(PersonRef(kind, value)) for kind, value in spec.identifiers()} - {None}
        if len(owners) > 1:
            raise IdentityConflict(f"the identifiers of {spec.email or spec.id} belong to different people")
        person = owners.pop() if owners else None
        if person is not None and spec.cio_id is not None and person.cio_id != spec.cio_id:
            raise IdentityConflict(f"{spec.email or spec.id} already exists with cio_id {person.cio_id}")
        if person is None:
            person = self._new_customer_locked(now, spec.cio_id)
        for kind in ("email", "id"):
            value = getattr(spec, kind)
            if value is not None:
                self._set_identifier_locked(person, kind, value, now)
        if spec.attributes is not None:
            person.attributes = dict(spec.attributes)
            person.timestamps.update(dict.fromkeys(spec.attributes, now))
        if spec.segment_ids is not None:
            self._set_segments_locked(person, set(spec.segment_ids))
        if spec.timestamps is not None:
            person.timestamps.update(spec.timestamps)
        return person

    # ---- people and their indexes

    def _find_locked(self, ref: PersonRef) -> Customer | None:
        if ref.kind == "email":
            return self._by_email.get(ref.value.lower())
        if ref.kind == "id":
            return self._by_id.get(ref.value)
        return self._by_cio_id.get(ref.value)

    def _new_customer_locked(self, now: int, cio_id: str | None = None) -> Customer:
        while cio_id is None or cio_id in self._by_cio_id:
            cio_id = secrets.token_hex(10)
        person = Customer(seq=self._next_seq, cio_id=cio_id, created=now)
        person.timestamps.update({"cio_id": now, "_created_in_customerio_at": now})
        self._next_seq += 1
        self._customers[person.seq] = person
        self._by_cio_id[cio_id] = person
        return person

    def _set_identifier_locked(self, person: Customer, kind: str, value: str, now: int) -> None:
        current = person.identifier(kind)
        if current is not None and same_identifier(kind, current, value):
            return
        index, key = (self._by_email, str.lower) if kind == "email" else (self._by_id, str)
        if current is not None:
            index.pop(key(current), None)
        index[key(value)] = person
        setattr(person, kind, value)
        person.timestamps[kind] = now

    def _set_segments_locked(self, person: Customer, segment_ids: set[int]) -> None:
        for segment_id in person.segment_ids - segment_ids:
            members = self._segments[segment_id].members
            del members[bisect.bisect_left(members, person.seq)]
        for segment_id in segment_ids - person.segment_ids:
            bisect.insort(self._segments[segment_id].members, person.seq)
        person.segment_ids = segment_ids

    def _merge_attributes_locked(self, person: Customer, attributes: Mapping[str, Any], now: int) -> None:
        for name, value in attributes.items():
            if removes_attribute(value):
                person.attributes.pop(name, None)
                person.timestamps.pop(name, None)
            else:
                person.attributes[name] = value
                person.timestamps[name] = now

    # ---- Track API

    def identify_people(self, requests: Iterable[IdentifyRequest]) -> list[str]:
        """Apply identify requests in order (one lock hold, so a batch is applied atomically); one outcome each."""
        now = int(time.time())
        with self._lock:
            return [self._identify_locked(request, now) for request in requests]

    def _identify_locked(self, request: IdentifyRequest, now: int) -> str:
        ref, body_identifiers = request.ref, request.body_identifiers
        if ref.kind in body_identifiers and not same_identifier(ref.kind, body_identifiers[ref.kind], ref.value):
            return FAILED  # the path and the body name different values of the same identifier
        person = self._find_locked(ref)
        assign: dict[str, str] = {}
        if person is None:
            if ref.kind == "cio_id":
                return SKIPPED  # Customer.io drops requests for a cio_id it does not know
            owners = {self._find_locked(PersonRef(k, v)) for k, v in body_identifiers.items()} - {None}
            if len(owners) > 1:
                return FAILED
            person = owners.pop() if owners else None
            if person is None and request.update_only:
                return SKIPPED
            # The person this request is about takes the path's identifier, even replacing one they had.
            assign[ref.kind] = ref.value
        for kind, value in body_identifiers.items():
            owner = self._find_locked(PersonRef(kind, value))
            if owner is not None and owner is not person:
                return FAILED
            current = person.identifier(kind) if person else None
            # Only a reference by cio_id may change an identifier a person already has.
            if current is not None and not same_identifier(kind, current, value) and ref.kind != "cio_id":
                return FAILED
            assign.setdefault(kind, value)

        outcome = UPDATED if person else CREATED
        person = person or self._new_customer_locked(now)
        for kind, value in assign.items():
            self._set_identifier_locked(person, kind, value, now)
        self._merge_attributes_locked(person, request.attributes, now)
        return outcome

    def change_segment_members(self, segment_id: int, refs: Iterable[PersonRef], add: bool) -> str | None:
        """Track API add_customers / remove_customers. None when done, else "not_found" or "data_driven". As in
        Customer.io, adding an email or id nobody has creates that person; an unknown cio_id is ignored."""
        now = int(time.time())
        with self._lock:
            segment = self._segments.get(segment_id)
            if segment is None:
                return "not_found"
            if segment.type != "manual":
                return "data_driven"
            for ref in refs:
                person = self._find_locked(ref)
                if person is None:
                    if not add or ref.kind == "cio_id":
                        continue
                    person = self._new_customer_locked(now)
                    self._set_identifier_locked(person, ref.kind, ref.value, now)
                wanted = set(person.segment_ids)
                if add:
                    wanted.add(segment_id)
                else:
                    wanted.discard(segment_id)
                self._set_segments_locked(person, wanted)
        return None

    # ---- App API

    def app_segments(self) -> list[dict]:
        with self._lock:
            return [segment.app_json() for segment in sorted(self._segments.values(), key=lambda s: s.id)]

    def app_segment(self, segment_id: int) -> dict | None:
        with self._lock:
            segment = self._segments.get(segment_id)
            return segment.app_json() if segment else None

    def app_segment_count(self, segment_id: int) -> int | None:
        with self._lock:
            segment = self._segments.get(segment_id)
            return len(segment.members) if segment else None

    def app_customer(self, ref: PersonRef) -> dict | None:
        with self._lock:
            person = self._find_locked(ref)
            return person.app_json() if person else None

    def app_customers(self, refs: Iterable[PersonRef]) -> list[dict]:
        """The people that exist among `refs`, each once, in the order asked."""
        with self._lock:
            found = {}
            for ref in refs:
                person = self._find_locked(ref)
                if person is not None and person.seq not in found:
                    found[person.seq] = person.app_json()
            return list(found.values())

    def app_customer_segments(self, ref: PersonRef) -> list[dict] | None:
        with self._lock:
            person = self._find_locked(ref)
            if person is None:
                return None
            return [self._segments[segment_id].app_json() for segment_id in sorted(person.segment_ids)]

    def app_membership(self, segment_id: int, limit: int, start: str | None) -> dict | None:
        """One page of a segment's members in a stable order; `next` is "" on the last page."""
        after_seq = decode_cursor(start) if start else 0
        with self._lock:
            segment = self._segments.get(segment_id)
            if segment is None:
                return None
            begin = bisect.bisect_right(segment.members, after_seq)
            page = [self._customers[seq] for seq in segment.members[begin : begin + limit]]
            more = begin + limit < len(segment.members)
        return {
            "identifiers": [person.identifiers_json() for person in page],
            # Customer.io documents an empty string in `ids` for a member without an id.
            "ids": [person.id or "" for person in page],
            "next": encode_cursor(page[-1].seq) if more else "",
        }

    # ---- request log

    def record_request(self, method: str, path: str, query: dict, body: Any, arrived_at: float) -> dict:
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

    def clear_requests(self) -> int:
        with self._lock:
            cleared = len(self._log)
            self._log = []
            return cleared

    def status(self) -> dict:
        with self._lock:
            return {**self._counts_locked(), "requests": len(self._log)}

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

    def fault_rejects(self, request: IdentifyRequest) -> bool:
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
