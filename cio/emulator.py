"""A Customer.io stand-in: a real HTTP server on loopback that answers like Customer.io's App API and Track API.

Customer.io cannot be reached from tests, the demo run (`make run`) or benchmarks, so this server takes its place. It
keeps people and segments in memory and answers the endpoints this project uses, with the shapes, status codes and
limits Customer.io documents.

App API (header `Authorization: Bearer <app_api_key>`; rate limited, see below):
    GET  /v1/segments
    GET  /v1/segments/{segment_id}
    GET  /v1/segments/{segment_id}/membership?limit=N&start=CURSOR
    GET  /v1/customers/{identifier}/attributes?id_type=id|email|cio_id
    GET  /v1/customers/{identifier}/segments?id_type=id|email|cio_id
    POST /v1/customers/attributes?id_type=id|email|cio_id        body {"ids": [...]} (at most 100)

Track API (HTTP Basic `site_id:track_api_key`; not rate limited):
    PUT  /api/v1/customers/{identifier}     identifier: an email, an id, or cio_<cio_id>
    POST /api/v2/batch                      person identify operations only

Behaviour worth knowing when reading a test:
  * Attribute values are stored as sent and the App API returns them as strings (True -> "true", 3 -> "3").
    Sending an attribute as null or "" removes it, as Customer.io does.
  * An identify that Customer.io would answer with an "Attribute Update Failure" (the request names two different
    people, or tries to change an identifier without referencing the person by cio_id) is answered 200 and changes
    nothing. So is an identify by an unknown cio_id, and one with `"_update": true` for somebody unknown.
  * Rate limit: an App API request is refused with 429 when `rate_limit` requests were already admitted in the
    trailing second. Only admitted requests count: refused ones (401 or 429) do not use up the allowance, so a
    client that backs off after a 429 gets through a second later, as with Customer.io's token bucket.
  * Latency (global `latency_ms` plus a fault's `latency_ms`) delays every API answer, errors included.
  * Checks run in this order: body size (413, as a proxy in front of the API would), credentials (401), the App API
    rate limit (429), injected faults, then the endpoint itself. Faults never hit a request refused before them.
  * A person without an id or email has `"id": null` / `"email": null` in `identifiers`; the membership page's
    `ids` list holds "" for a member without an id, as Customer.io documents.

Control endpoints (no auth; loopback clients only, others get 403; never written to the request log):
    GET    /_emulator/requests[?since=N&path_prefix=P&method=M]   -> [{"method", "path", "query", "body",
               "status", "time"}, ...]; `since` skips the first N entries of the current log, so a test can remember
               len(log) and ask only for what came after. `path` is percent-decoded; `status` is null while the
               request is being answered and for emulated timeouts.
    DELETE /_emulator/requests                                -> {"cleared": N}
    POST   /_emulator/customers   one customer, fixture shape  -> the stored customer (see EmulatorState.customer)
    GET    /_emulator/customers/{email | id | cio_<cio_id>}   -> the stored customer, or 404
    POST   /_emulator/segments    one segment, fixture shape   -> the stored segment
    GET    /_emulator/faults                                  -> the fault plan in force
    POST   /_emulator/faults      {"fail_rate", "fail_status", "latency_ms", "timeout_rate", "timeout_seconds",
               "path_prefix", "method", "seed", "reject_identifiers"} (all optional; {} clears) -> the fault plan in
               force. `reject_identifiers` (emails, ids or cio_ids) makes /api/v2/batch refuse the operations naming
               them, answering 207 with their batch_index while applying the rest, as Customer.io does with
               operations it finds invalid.
    GET    /_emulator/settings                                -> {"rate_limit", "retry_after_header", "latency_ms"}
    POST   /_emulator/settings    any of those keys           -> the settings in force
    POST   /_emulator/reset       optional {"fixture": {...}}: clears people, segments, log, faults and the rate
               limiter's window (settings stay) -> {"segments": N, "customers": N}
    POST   /_emulator/load        a fixture, added to what is there (upserts) -> {"segments": N, "customers": N}
    GET    /_emulator/status                                  -> {"segments": N, "customers": N, "requests": N}
Bad input answers 400 {"error": "..."}; identifiers that belong to two different people answer 409.

Fixture shape: {"segments": [{"id": 1, "name": "VIP", "type": "manual", "description": ""}],
                "customers": [{"email": "a@example.com", "id": "a1", "cio_id": "...", "attributes": {...},
                               "segments": [1], "unsubscribed": false, "timestamps": {...}}]}
Every customer needs an email or an id; cio_id is generated when missing.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import contextlib
import hmac
import ipaddress
import json
import logging
import random
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

APP_API_PREFIX = "/v1/"
TRACK_API_PREFIX = "/api/"
CONTROL_PREFIX = "/_emulator/"

# Customer.io refuses batch requests over 500 KB and batch operations over 32 KB.
MAX_API_BODY_BYTES = 500 * 1024
MAX_BATCH_OPERATION_BYTES = 32 * 1024
# Benchmark fixtures of 100,000 people run to tens of megabytes.
MAX_CONTROL_BODY_BYTES = 512 * 1024 * 1024
# An oversized body is read and thrown away so the keep-alive connection stays usable; past this it isn't worth it.
MAX_DISCARDED_BODY_BYTES = 64 * 1024 * 1024
MAX_LOOKUP_IDS = 100
DEFAULT_MEMBERSHIP_LIMIT = 1000
MAX_MEMBERSHIP_LIMIT = 30000
ID_TYPES = ("id", "email", "cio_id")
RATE_WINDOW_SECONDS = 1.0
DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0
# Idle keep-alive connections give their thread back after this long.
IDLE_CONNECTION_SECONDS = 120
# Bursts of concurrent clients must not overflow the accept queue: refused SYNs are retried a second later,
# which would smear a burst across the rate limiter's window.
ACCEPT_QUEUE_SIZE = 1024

UNAUTHORIZED = {"meta": {"error": "Unauthorized request"}}
RATE_LIMITED = {"meta": {"error": "rate limited"}}

# Keys of an identify body that are not attributes of the person: identifiers and Customer.io's request options.
_NOT_ATTRIBUTES = frozenset({"email", "id", "cio_id", "_update", "_timestamp", "cio_relationships"})


class EmulatorInputError(ValueError):
    """Input to a control endpoint or a Python helper that the emulator cannot use (answered 400)."""


class IdentityConflict(ValueError):
    """The identifiers given belong to two different people (answered 409)."""


# --------------------------------------------------------------------------------------------------------------------
# Values


def attribute_string(value: Any) -> str:
    """An attribute value as the App API returns it: Customer.io hands every attribute back as a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON 3.0 and 3 are the same number to Customer.io
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _removes_attribute(value: Any) -> bool:
    return value is None or value == ""


def _is_unsubscribed(value: Any) -> bool:
    # Customer.io's documented rule: true in any letter case, 1 or "1" unsubscribe; anything else is subscribed.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return False


def _identifier_text(value: Any) -> str | None:
    """An identifier as Customer.io keeps it (a string), or None when the value cannot identify anybody."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _same_identifier(kind: str, left: str, right: str) -> bool:
    return left.lower() == right.lower() if kind == "email" else left == right


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _encode_cursor(after_seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{after_seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise EmulatorInputError(f"invalid start cursor {cursor!r}") from None
    label, _, number = text.partition(":")
    if label != "after" or not number.isdigit():
        raise EmulatorInputError(f"invalid start cursor {cursor!r}")
    return int(number)


# --------------------------------------------------------------------------------------------------------------------
# Records


@dataclass(eq=False, slots=True)
class _Segment:
    id: int
    name: str
    type: str
    description: str
    created: int
    # Sequence numbers of the members, ascending: membership pages follow this order, so cursors stay valid while
    # people join and leave.
    members: list[int] = field(default_factory=list)

    def app_json(self) -> dict:
        return {
            "id": self.id,
            "deduplicate_id": f"{self.id}:{self.created}",
            "name": self.name,
            "description": self.description,
            "state": "finished",
            "progress": None,
            "type": self.type,
            "tags": None,
        }


@dataclass(eq=False, slots=True)
class _Customer:
    seq: int
    cio_id: str
    created: int
    id: str | None = None
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    timestamps: dict[str, int] = field(default_factory=dict)
    segment_ids: set[int] = field(default_factory=set)

    @property
    def unsubscribed(self) -> bool:
        return _is_unsubscribed(self.attributes.get("unsubscribed"))

    def identifier(self, kind: str) -> str | None:
        return getattr(self, kind)

    def identifiers_json(self) -> dict:
        return {"email": self.email, "id": self.id, "cio_id": self.cio_id}

    def app_json(self) -> dict:
        """The `customer` object of the App API's attribute lookups."""
        attributes = {name: attribute_string(value) for name, value in self.attributes.items()}
        attributes["cio_id"] = self.cio_id
        attributes["_created_in_customerio_at"] = str(self.created)
        if self.email is not None:
            attributes["email"] = self.email
        if self.id is not None:
            attributes["id"] = self.id
        return {
            "id": self.id,
            "identifiers": self.identifiers_json(),
            "attributes": attributes,
            "timestamps": dict(self.timestamps),
            "unsubscribed": self.unsubscribed,
            "devices": [],
        }

    def stored_json(self) -> dict:
        """What the emulator holds, raw attribute values included: for tests that check what a client sent."""
        return {
            "cio_id": self.cio_id,
            "id": self.id,
            "email": self.email,
            "attributes": dict(self.attributes),
            "segments": sorted(self.segment_ids),
            "timestamps": dict(self.timestamps),
            "unsubscribed": self.unsubscribed,
        }


@dataclass(frozen=True, slots=True)
class PersonRef:
    """How a request names a person: one identifier and its kind ("email", "id" or "cio_id")."""

    kind: str
    value: str

    @classmethod
    def from_path(cls, identifier: str) -> PersonRef:
        # Customer.io tells the kinds apart by shape: cio_ prefix, then an "@", else an id.
        if identifier.startswith("cio_"):
            return cls("cio_id", identifier.removeprefix("cio_"))
        if "@" in identifier:
            return cls("email", identifier)
        return cls("id", identifier)


@dataclass(frozen=True, slots=True)
class _IdentifyRequest:
    ref: PersonRef
    body_identifiers: dict[str, str]  # "email"/"id" given among the attributes
    attributes: dict[str, Any]
    update_only: bool

    @classmethod
    def build(cls, ref: PersonRef, body: Mapping[str, Any]) -> _IdentifyRequest:
        body_identifiers = {}
        for kind in ("email", "id"):
            value = _identifier_text(body.get(kind))
            if value is not None:
                body_identifiers[kind] = value
        attributes = {name: value for name, value in body.items() if name not in _NOT_ATTRIBUTES}
        return cls(ref, body_identifiers, attributes, update_only=body.get("_update") is True)


# Outcomes of an identify, for Python-level callers; over HTTP every one of them is answered 200 {}.
CREATED, UPDATED, SKIPPED, FAILED = "created", "updated", "skipped", "failed"


# --------------------------------------------------------------------------------------------------------------------
# Fixtures


@dataclass(frozen=True, slots=True)
class _SegmentSpec:
    id: int
    name: str | None
    type: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class _CustomerSpec:
    cio_id: str | None
    id: str | None
    email: str | None
    attributes: dict[str, Any] | None
    segment_ids: tuple[int, ...] | None
    timestamps: dict[str, int] | None

    def identifiers(self) -> Iterable[tuple[str, str]]:
        for kind, value in (("cio_id", self.cio_id), ("id", self.id), ("email", self.email)):
            if value is not None:
                yield kind, value


@dataclass(frozen=True, slots=True)
class _Fixture:
    segments: tuple[_SegmentSpec, ...] = ()
    customers: tuple[_CustomerSpec, ...] = ()


def _require_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EmulatorInputError(f"{where} must be an integer")
    return value


def _optional_str(entry: Mapping, key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise EmulatorInputError(f"{where}.{key} must be a string")
    return value


def _parse_segment(entry: Any, where: str) -> _SegmentSpec:
    if not isinstance(entry, Mapping):
        raise EmulatorInputError(f"{where} must be an object")
    return _SegmentSpec(
        id=_require_int(entry.get("id"), f"{where}.id"),
        name=_optional_str(entry, "name", where),
        type=_optional_str(entry, "type", where),
        description=_optional_str(entry, "description", where),
    )


def _parse_customer(entry: Any, where: str) -> _CustomerSpec:
    if not isinstance(entry, Mapping):
        raise EmulatorInputError(f"{where} must be an object")
    identifiers = {}
    for kind in ("cio_id", "id", "email"):
        raw = entry.get(kind)
        identifiers[kind] = _identifier_text(raw)
        if raw is not None and identifiers[kind] is None:
            raise EmulatorInputError(f"{where}.{kind} must be a non-empty string")
    if identifiers["id"] is None and identifiers["email"] is None:
        raise EmulatorInputError(f"{where} needs an email or an id")

    attributes = entry.get("attributes")
    if attributes is not None:
        if not isinstance(attributes, Mapping):
            raise EmulatorInputError(f"{where}.attributes must be an object")
        attributes = {name: value for name, value in attributes.items() if not _removes_attribute(value)}
    if "unsubscribed" in entry:
        attributes = {**(attributes or {}), "unsubscribed": bool(entry["unsubscribed"])}

    segments = entry.get("segments")
    if segments is not None:
        if not isinstance(segments, list):
            raise EmulatorInputError(f"{where}.segments must be a list of segment ids")
        segments = tuple(_require_int(s, f"{where}.segments[]") for s in segments)

    timestamps = entry.get("timestamps")
    if timestamps is not None and not (
        isinstance(timestamps, Mapping) and all(isinstance(v, int) for v in timestamps.values())
    ):
        raise EmulatorInputError(f"{where}.timestamps must map names to integers")

    return _CustomerSpec(
        cio_id=identifiers["cio_id"],
        id=identifiers["id"],
        email=identifiers["email"],
        attributes=attributes,
        segment_ids=segments,
        timestamps=dict(timestamps) if timestamps is not None else None,
    )


def _parse_fixture(fixture: Any) -> _Fixture:
    if not isinstance(fixture, Mapping):
        raise EmulatorInputError("a fixture must be an object with 'segments' and 'customers' lists")
    unknown = set(fixture) - {"segments", "customers"}
    if unknown:
        raise EmulatorInputError(f"unknown fixture keys: {sorted(unknown)}")
    segments, customers = fixture.get("segments") or [], fixture.get("customers") or []
    if not isinstance(segments, list) or not isinstance(customers, list):
        raise EmulatorInputError("fixture 'segments' and 'customers' must be lists")
    return _Fixture(
        segments=tuple(_parse_segment(entry, f"segments[{i}]") for i, entry in enumerate(segments)),
        customers=tuple(_parse_customer(entry, f"customers[{i}]") for i, entry in enumerate(customers)),
    )


def read_fixture(fixture: Mapping | str | Path) -> Mapping:
    """A fixture given as a mapping or as the path of a JSON file."""
    if isinstance(fixture, Mapping):
        return fixture
    if isinstance(fixture, str | Path):
        with open(fixture, encoding="utf-8") as handle:
            return json.load(handle)
    raise TypeError(f"fixture must be a mapping, a path or None, not {type(fixture).__name__}")


# --------------------------------------------------------------------------------------------------------------------
# Faults and settings


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Failures to inject into API requests whose path starts with `path_prefix` (and whose method is `method`)."""

    fail_rate: float = 0.0
    fail_status: int = 500
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = DEFAULT_TIMEOUT_FAULT_SECONDS
    path_prefix: str = ""
    method: str | None = None
    seed: int | None = None
    reject_identifiers: frozenset[str] = frozenset()

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (self.method is None or self.method == method)

    def rejects(self, request: _IdentifyRequest) -> bool:
        """Whether a batch operation is to be refused: it names one of `reject_identifiers`."""
        return bool(self.reject_identifiers) and (
            request.ref.value in self.reject_identifiers
            or any(value in self.reject_identifiers for value in request.body_identifiers.values())
        )

    def as_json(self) -> dict:
        return {
            "fail_rate": self.fail_rate,
            "fail_status": self.fail_status,
            "latency_ms": self.latency_ms,
            "timeout_rate": self.timeout_rate,
            "timeout_seconds": self.timeout_seconds,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "seed": self.seed,
            "reject_identifiers": sorted(self.reject_identifiers),
        }

    @classmethod
    def from_json(cls, body: Any) -> FaultPlan:
        if not isinstance(body, Mapping):
            raise EmulatorInputError("faults must be an object")
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise EmulatorInputError(f"unknown fault keys: {sorted(unknown)}")
        defaults = cls()
        fail_status = _require_int(body.get("fail_status", defaults.fail_status), "fail_status")
        if not 400 <= fail_status <= 599:
            raise EmulatorInputError("fail_status must be an HTTP error status (400-599)")
        method = body.get("method")
        if method is not None and not isinstance(method, str):
            raise EmulatorInputError("method must be a string")
        path_prefix = body.get("path_prefix") or ""
        if not isinstance(path_prefix, str):
            raise EmulatorInputError("path_prefix must be a string")
        seed = body.get("seed")
        if seed is not None:
            _require_int(seed, "seed")
        reject_identifiers = body.get("reject_identifiers") or []
        if not isinstance(reject_identifiers, list) or not all(isinstance(v, str) for v in reject_identifiers):
            raise EmulatorInputError("reject_identifiers must be a list of strings")
        return cls(
            fail_rate=_rate(body.get("fail_rate", 0.0), "fail_rate"),
            fail_status=fail_status,
            latency_ms=_non_negative(body.get("latency_ms", 0.0), "latency_ms"),
            timeout_rate=_rate(body.get("timeout_rate", 0.0), "timeout_rate"),
            timeout_seconds=_non_negative(body.get("timeout_seconds", defaults.timeout_seconds), "timeout_seconds"),
            path_prefix=path_prefix,
            method=method.upper() if method else None,
            seed=seed,
            reject_identifiers=frozenset(reject_identifiers),
        )


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise EmulatorInputError(f"{name} must be a number >= 0")
    return float(value)


def _rate(value: Any, name: str) -> float:
    rate = _non_negative(value, name)
    if rate > 1:
        raise EmulatorInputError(f"{name} must be between 0 and 1")
    return rate


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What the fault plan does to one request: delay it, then fail it, hang up on it, or let it through."""

    latency_seconds: float = 0.0
    fail_status: int | None = None
    hang_up_after_seconds: float | None = None


@dataclass(slots=True)
class _Settings:
    rate_limit: int  # 0 disables the limiter
    retry_after_header: bool
    latency_ms: float

    def as_json(self) -> dict:
        return {
            "rate_limit": self.rate_limit,
            "retry_after_header": self.retry_after_header,
            "latency_ms": self.latency_ms,
        }


# --------------------------------------------------------------------------------------------------------------------
# State


class EmulatorState:
    """Everything the emulator knows, behind one lock: people, segments, the request log, the rate limiter's window,
    the fault plan and the settings. Safe to use from any thread."""

    def __init__(self, rate_limit: int | None = 10, latency_ms: float = 0, retry_after_header: bool = True):
        self._lock = threading.Lock()
        self._settings = _Settings(rate_limit=0, retry_after_header=True, latency_ms=0.0)
        self.update_settings(
            {"rate_limit": rate_limit, "retry_after_header": bool(retry_after_header), "latency_ms": latency_ms}
        )
        self._clear_locked()

    def _clear_locked(self) -> None:
        self._segments: dict[int, _Segment] = {}
        self._customers: dict[int, _Customer] = {}  # by sequence number
        self._by_email: dict[str, _Customer] = {}  # lower-cased: Customer.io matches emails case-insensitively
        self._by_id: dict[str, _Customer] = {}
        self._by_cio_id: dict[str, _Customer] = {}
        self._next_seq = 1
        self._log: list[dict] = []
        self._admitted: collections.deque[float] = collections.deque()  # monotonic admission times
        self._faults = FaultPlan()
        self._random = random.Random()

    # ---- fixtures and control-side upserts

    def reset(self, fixture: Mapping | None = None) -> dict:
        """Forget people, segments, the log, the faults and the rate window (settings stay); then load `fixture`."""
        parsed = _parse_fixture(fixture) if fixture is not None else _Fixture()
        with self._lock:
            self._check_segment_references(parsed, existing=())
            self._clear_locked()
            self._apply_fixture_locked(parsed)
            return self._counts_locked()

    def load_fixture(self, fixture: Mapping) -> dict:
        """Add a fixture to what is there: segments and people are upserted (people matched by cio_id, id, email).

        A conflict (identifiers of two different people) stops the load at that person; earlier ones stay applied.
        """
        parsed = _parse_fixture(fixture)
        with self._lock:
            self._check_segment_references(parsed, existing=self._segments)
            self._apply_fixture_locked(parsed)
            return self._counts_locked()

    def upsert_segment(self, segment: Mapping) -> dict:
        spec = _parse_segment(segment, "segment")
        with self._lock:
            self._check_segment_references(_Fixture(segments=(spec,)), existing=self._segments)
            return self._upsert_segment_locked(spec, int(time.time())).app_json()

    def upsert_customer(self, customer: Mapping) -> dict:
        spec = _parse_customer(customer, "customer")
        with self._lock:
            self._check_segment_references(_Fixture(customers=(spec,)), existing=self._segments)
            return self._upsert_customer_locked(spec, int(time.time())).stored_json()

    def customer(self, identifier: str) -> dict | None:
        """The stored customer named by an email, an id or cio_<cio_id>, raw attribute values included."""
        with self._lock:
            person = self._find_locked(PersonRef.from_path(identifier))
            return person.stored_json() if person else None

    def _check_segment_references(self, fixture: _Fixture, existing: Iterable[int]) -> None:
        known = set(existing)
        for spec in fixture.segments:
            if spec.id not in known and spec.name is None:
                raise EmulatorInputError(f"segment {spec.id} is new and needs a name")
            known.add(spec.id)
        for spec in fixture.customers:
            missing = set(spec.segment_ids or ()) - known
            if missing:
                raise EmulatorInputError(f"customer {spec.email or spec.id} names unknown segments {sorted(missing)}")

    def _apply_fixture_locked(self, fixture: _Fixture) -> None:
        now = int(time.time())
        for segment_spec in fixture.segments:
            self._upsert_segment_locked(segment_spec, now)
        for customer_spec in fixture.customers:
            self._upsert_customer_locked(customer_spec, now)

    def _counts_locked(self) -> dict:
        return {"segments": len(self._segments), "customers": len(self._customers)}

    def _upsert_segment_locked(self, spec: _SegmentSpec, now: int) -> _Segment:
        segment = self._segments.get(spec.id)
        if segment is None:
            segment = _Segment(id=spec.id, name=spec.name or "", type="manual", description="", created=now)
            self._segments[spec.id] = segment
        if spec.name is not None:
            segment.name = spec.name
        if spec.type is not None:
            segment.type = spec.type
        if spec.description is not None:
            segment.description = spec.description
        return segment

    def _upsert_customer_locked(self, spec: _CustomerSpec, now: int) -> _Customer:
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

    def _find_locked(self, ref: PersonRef) -> _Customer | None:
        if ref.kind == "email":
            return self._by_email.get(ref.value.lower())
        if ref.kind == "id":
            return self._by_id.get(ref.value)
        return self._by_cio_id.get(ref.value)

    def _new_customer_locked(self, now: int, cio_id: str | None = None) -> _Customer:
        while cio_id is None or cio_id in self._by_cio_id:
            cio_id = secrets.token_hex(10)
        person = _Customer(seq=self._next_seq, cio_id=cio_id, created=now)
        person.timestamps.update({"cio_id": now, "_created_in_customerio_at": now})
        self._next_seq += 1
        self._customers[person.seq] = person
        self._by_cio_id[cio_id] = person
        return person

    def _set_identifier_locked(self, person: _Customer, kind: str, value: str, now: int) -> None:
        current = person.identifier(kind)
        if current is not None and _same_identifier(kind, current, value):
            return
        index, key = (self._by_email, str.lower) if kind == "email" else (self._by_id, str)
        if current is not None:
            index.pop(key(current), None)
        index[key(value)] = person
        setattr(person, kind, value)
        person.timestamps[kind] = now

    def _set_segments_locked(self, person: _Customer, segment_ids: set[int]) -> None:
        for segment_id in person.segment_ids - segment_ids:
            members = self._segments[segment_id].members
            del members[bisect.bisect_left(members, person.seq)]
        for segment_id in segment_ids - person.segment_ids:
            bisect.insort(self._segments[segment_id].members, person.seq)
        person.segment_ids = segment_ids

    def _merge_attributes_locked(self, person: _Customer, attributes: Mapping[str, Any], now: int) -> None:
        for name, value in attributes.items():
            if _removes_attribute(value):
                person.attributes.pop(name, None)
                person.timestamps.pop(name, None)
            else:
                person.attributes[name] = value
                person.timestamps[name] = now

    # ---- Track API

    def identify_people(self, requests: Iterable[_IdentifyRequest]) -> list[str]:
        """Apply identify requests in order (one lock hold, so a batch is applied atomically); one outcome each."""
        now = int(time.time())
        with self._lock:
            return [self._identify_locked(request, now) for request in requests]

    def _identify_locked(self, request: _IdentifyRequest, now: int) -> str:
        ref, body_identifiers = request.ref, request.body_identifiers
        if ref.kind in body_identifiers and not _same_identifier(ref.kind, body_identifiers[ref.kind], ref.value):
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
            if current is not None and not _same_identifier(kind, current, value) and ref.kind != "cio_id":
                return FAILED
            assign.setdefault(kind, value)

        outcome = UPDATED if person else CREATED
        person = person or self._new_customer_locked(now)
        for kind, value in assign.items():
            self._set_identifier_locked(person, kind, value, now)
        self._merge_attributes_locked(person, request.attributes, now)
        return outcome

    # ---- App API

    def app_segments(self) -> list[dict]:
        with self._lock:
            return [segment.app_json() for segment in sorted(self._segments.values(), key=lambda s: s.id)]

    def app_segment(self, segment_id: int) -> dict | None:
        with self._lock:
            segment = self._segments.get(segment_id)
            return segment.app_json() if segment else None

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
        after_seq = _decode_cursor(start) if start else 0
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
            "next": _encode_cursor(page[-1].seq) if more else "",
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

    def fault_rejects(self, request: _IdentifyRequest) -> bool:
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
            validated["rate_limit"] = 0 if rate_limit is None else _require_int(rate_limit, "rate_limit")
            if validated["rate_limit"] < 0:
                raise EmulatorInputError("rate_limit must be >= 0 (0 or null disables it)")
        if "retry_after_header" in changes:
            if not isinstance(changes["retry_after_header"], bool):
                raise EmulatorInputError("retry_after_header must be true or false")
            validated["retry_after_header"] = changes["retry_after_header"]
        if "latency_ms" in changes:
            validated["latency_ms"] = _non_negative(changes["latency_ms"], "latency_ms")
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


# --------------------------------------------------------------------------------------------------------------------
# Requests and replies


@dataclass(frozen=True, slots=True)
class _Body:
    value: Any = None  # the parsed JSON document; None when absent or unparseable
    empty: bool = True
    valid: bool = True
    too_large: bool = False

    @classmethod
    def parse(cls, data: bytes) -> _Body:
        if not data.strip():
            return cls()
        try:
            return cls(value=json.loads(data), empty=False)
        except ValueError:  # also covers bytes that are not UTF-8
            return cls(empty=False, valid=False)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    payload: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Call:
    """One routed request, as a route function sees it."""

    state: EmulatorState
    params: dict[str, str]  # percent-decoded path parameters
    query: dict[str, str]
    body: _Body


def _app_error(status: int, detail: str) -> _Reply:
    return _Reply(status, {"errors": [{"detail": detail, "status": str(status)}]})


def _track_error(status: int, message: str) -> _Reply:
    return _Reply(status, {"meta": {"errors": [message]}})


def _batch_error(reason: str, field_name: str, message: str) -> dict:
    return {"reason": reason, "field": field_name, "message": message}


def _control_error(status: int, message: str) -> _Reply:
    return _Reply(status, {"error": message})


# ---- App API routes


def _id_type(call: _Call) -> str:
    id_type = call.query.get("id_type") or "id"
    if id_type not in ID_TYPES:
        raise EmulatorInputError(f"id_type must be one of {', '.join(ID_TYPES)}")
    return id_type


def _segment_id(call: _Call) -> int | None:
    raw = call.params["segment_id"]
    return int(raw) if raw.isdigit() else None


def _get_segments(call: _Call) -> _Reply:
    return _Reply(200, {"segments": call.state.app_segments()})


def _get_segment(call: _Call) -> _Reply:
    segment_id = _segment_id(call)
    segment = call.state.app_segment(segment_id) if segment_id is not None else None
    return _Reply(200, {"segment": segment}) if segment else _app_error(404, "Segment not found")


def _get_membership(call: _Call) -> _Reply:
    raw_limit = call.query.get("limit") or str(DEFAULT_MEMBERSHIP_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_MEMBERSHIP_LIMIT:
        return _app_error(400, f"limit must be an integer from 1 to {MAX_MEMBERSHIP_LIMIT}")
    segment_id = _segment_id(call)
    start = call.query.get("start")
    page = call.state.app_membership(segment_id, int(raw_limit), start) if segment_id is not None else None
    return _Reply(200, page) if page is not None else _app_error(404, "Segment not found")


def _get_customer_attributes(call: _Call) -> _Reply:
    customer = call.state.app_customer(PersonRef(_id_type(call), call.params["identifier"]))
    return _Reply(200, {"customer": customer}) if customer else _app_error(404, "Customer not found")


def _get_customer_segments(call: _Call) -> _Reply:
    segments = call.state.app_customer_segments(PersonRef(_id_type(call), call.params["identifier"]))
    return _Reply(200, {"segments": segments}) if segments is not None else _app_error(404, "Customer not found")


def _post_customers_attributes(call: _Call) -> _Reply:
    id_type = _id_type(call)
    if not call.body.valid:
        return _app_error(400, "the body is not valid JSON")
    document = call.body.value
    ids = document.get("ids") if isinstance(document, dict) else None
    if not isinstance(ids, list):
        return _app_error(400, 'the body must be a JSON object {"ids": [...]}')
    if len(ids) > MAX_LOOKUP_IDS:
        return _app_error(400, f"at most {MAX_LOOKUP_IDS} ids per request ({len(ids)} given)")
    values = [_identifier_text(value) for value in ids]
    if None in values:
        return _app_error(400, "every id must be a non-empty string or an integer")
    customers = call.state.app_customers(PersonRef(id_type, value) for value in values)
    return _Reply(200, {"customers": [{"customer": customer} for customer in customers]})


# ---- Track API routes


def _put_customer(call: _Call) -> _Reply:
    if not call.body.valid:
        return _track_error(400, "the body is not valid JSON")
    attributes = {} if call.body.empty else call.body.value
    if not isinstance(attributes, dict):
        return _track_error(400, "the body must be a JSON object of attributes")
    call.state.identify_people([_IdentifyRequest.build(PersonRef.from_path(call.params["identifier"]), attributes)])
    return _Reply(200, {})


class _InvalidOperation(ValueError):
    def __init__(self, reason: str, field_name: str, message: str):
        super().__init__(message)
        self.error = _batch_error(reason, field_name, message)


def _batch_operation(operation: Any) -> _IdentifyRequest:
    """The identify request a v2 batch entry describes, or _InvalidOperation saying what is wrong with it."""
    if not isinstance(operation, dict):
        raise _InvalidOperation("invalid", "batch", "each batch entry must be an object")
    if len(_json_bytes(operation)) > MAX_BATCH_OPERATION_BYTES:
        message = f"a batch entry must be {MAX_BATCH_OPERATION_BYTES} bytes or less"
        raise _InvalidOperation("too_large", "batch", message)
    if operation.get("type") != "person":
        raise _InvalidOperation("invalid", "type", "type must be 'person' (the emulator handles only people)")
    if operation.get("action") != "identify":
        raise _InvalidOperation("invalid", "action", "action must be 'identify' (the only action the emulator handles)")
    identifiers = operation.get("identifiers")
    if not isinstance(identifiers, dict) or len(identifiers) != 1:
        raise _InvalidOperation("invalid", "identifiers", "identifiers must hold exactly one of id, email or cio_id")
    ((kind, raw_value),) = identifiers.items()
    value = _identifier_text(raw_value)
    if kind not in ID_TYPES or value is None:
        raise _InvalidOperation("invalid", "identifiers", f"identifiers.{kind} is not a usable id, email or cio_id")
    attributes = operation.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _InvalidOperation("invalid", "attributes", "attributes must be an object")
    return _IdentifyRequest.build(PersonRef(kind, value), attributes)


def _post_batch(call: _Call) -> _Reply:
    document = call.body.value
    batch = document.get("batch") if isinstance(document, dict) else None
    if not isinstance(batch, list):
        message = 'the body must be a JSON object {"batch": [...]}'
        return _Reply(400, {"errors": [_batch_error("invalid", "batch", message)]})
    requests, errors = [], []
    for index, operation in enumerate(batch):
        try:
            request = _batch_operation(operation)
        except _InvalidOperation as invalid:
            errors.append({"batch_index": index, **invalid.error})
            continue
        if call.state.fault_rejects(request):
            message = "refused by the emulator's fault plan (reject_identifiers)"
            errors.append({"batch_index": index, **_batch_error("invalid", "identifiers", message)})
            continue
        requests.append(request)
    call.state.identify_people(requests)
    return _Reply(207, {"errors": errors}) if errors else _Reply(200, {})


# ---- control routes


def _control_list_requests(call: _Call) -> _Reply:
    since = call.query.get("since") or "0"
    if not since.isdigit():
        raise EmulatorInputError("since must be a non-negative integer")
    entries = call.state.requests(int(since), call.query.get("path_prefix"), call.query.get("method"))
    return _Reply(200, entries)


def _control_clear_requests(call: _Call) -> _Reply:
    return _Reply(200, {"cleared": call.state.clear_requests()})


def _control_upsert_customer(call: _Call) -> _Reply:
    return _Reply(200, call.state.upsert_customer(call.body.value))


def _control_get_customer(call: _Call) -> _Reply:
    customer = call.state.customer(call.params["identifier"])
    return _Reply(200, customer) if customer else _control_error(404, "no such customer")


def _control_upsert_segment(call: _Call) -> _Reply:
    return _Reply(200, call.state.upsert_segment(call.body.value))


def _control_get_faults(call: _Call) -> _Reply:
    return _Reply(200, call.state.faults())


def _control_set_faults(call: _Call) -> _Reply:
    return _Reply(200, call.state.set_faults({} if call.body.empty else call.body.value))


def _control_get_settings(call: _Call) -> _Reply:
    return _Reply(200, call.state.settings())


def _control_update_settings(call: _Call) -> _Reply:
    return _Reply(200, call.state.update_settings({} if call.body.empty else call.body.value))


def _control_reset(call: _Call) -> _Reply:
    document = {} if call.body.empty else call.body.value
    if not isinstance(document, dict) or set(document) - {"fixture"}:
        raise EmulatorInputError('reset takes no body or {"fixture": {...}}')
    return _Reply(200, call.state.reset(document.get("fixture")))


def _control_load(call: _Call) -> _Reply:
    return _Reply(200, call.state.load_fixture(call.body.value))


def _control_status(call: _Call) -> _Reply:
    return _Reply(200, call.state.status())


# ---- routing

_Route = tuple[str, re.Pattern, Callable[[_Call], _Reply]]


def _routes(*table: tuple[str, str, Callable[[_Call], _Reply]]) -> tuple[_Route, ...]:
    return tuple((method, re.compile(pattern), handler) for method, pattern, handler in table)


_SEGMENT = r"(?P<segment_id>[^/]+)"
_IDENTIFIER = r"(?P<identifier>[^/]+)"

APP_ROUTES = _routes(
    ("GET", r"/v1/segments", _get_segments),
    ("GET", rf"/v1/segments/{_SEGMENT}", _get_segment),
    ("GET", rf"/v1/segments/{_SEGMENT}/membership", _get_membership),
    ("POST", r"/v1/customers/attributes", _post_customers_attributes),
    ("GET", rf"/v1/customers/{_IDENTIFIER}/attributes", _get_customer_attributes),
    ("GET", rf"/v1/customers/{_IDENTIFIER}/segments", _get_customer_segments),
)
TRACK_ROUTES = _routes(
    ("PUT", rf"/api/v1/customers/{_IDENTIFIER}", _put_customer),
    ("POST", r"/api/v2/batch", _post_batch),
)
CONTROL_ROUTES = _routes(
    ("GET", r"/_emulator/requests", _control_list_requests),
    ("DELETE", r"/_emulator/requests", _control_clear_requests),
    ("POST", r"/_emulator/customers", _control_upsert_customer),
    ("GET", rf"/_emulator/customers/{_IDENTIFIER}", _control_get_customer),
    ("POST", r"/_emulator/segments", _control_upsert_segment),
    ("GET", r"/_emulator/faults", _control_get_faults),
    ("POST", r"/_emulator/faults", _control_set_faults),
    ("GET", r"/_emulator/settings", _control_get_settings),
    ("POST", r"/_emulator/settings", _control_update_settings),
    ("POST", r"/_emulator/reset", _control_reset),
    ("POST", r"/_emulator/load", _control_load),
    ("GET", r"/_emulator/status", _control_status),
)


def _match_route(
    routes: tuple[_Route, ...], method: str, raw_path: str
) -> tuple[Callable[[_Call], _Reply], dict[str, str]] | int:
    """The route function and its decoded path parameters, or 404/405 when nothing answers this request."""
    path_known = False
    for route_method, pattern, handler in routes:
        match = pattern.fullmatch(raw_path)
        if match:
            path_known = True
            if route_method == method:
                # Parameters are decoded after matching so that an encoded "/" stays inside its segment.
                return handler, {name: unquote(value) for name, value in match.groupdict().items()}
    return 405 if path_known else 404


# --------------------------------------------------------------------------------------------------------------------
# Authentication


def _bearer_matches(header: str | None, api_key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def _basic_matches(header: str | None, user: str, password: str) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(credentials, f"{user}:{password}".encode())


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


# --------------------------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a requests.Session reuses its connection
    server_version = "CustomerIoEmulator/1.0"
    timeout = IDLE_CONNECTION_SECONDS
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus delayed ACKs add 40 ms to each.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a line per request on stderr drowns test and benchmark output."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    @property
    def _emulator(self) -> EmulatorServer:
        return self.server.emulator

    def _dispatch(self) -> None:
        arrived_at = time.time()
        self._answered = False
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path.startswith(CONTROL_PREFIX):
                self._serve_control(url.path, query)
            elif url.path.startswith(APP_API_PREFIX):
                self._serve_api(APP_ROUTES, url.path, query, arrived_at)
            elif url.path.startswith(TRACK_API_PREFIX):
                self._serve_api(TRACK_ROUTES, url.path, query, arrived_at)
            elif self._read_body(0) is not None:
                self._send_json(404, {"error": "not a Customer.io API path"})
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or stalled; nobody is left to answer
        except Exception:
            logger.exception("emulator failed answering %s %s", self.command, self.path)
            self.close_connection = True
            if not self._answered:
                self._send_json(500, {"error": "the emulator failed; see its log"})

    # ---- API requests

    def _serve_api(self, routes: tuple[_Route, ...], raw_path: str, query: dict, arrived_at: float) -> None:
        body = self._read_body(MAX_API_BODY_BYTES)
        if body is None:
            return
        state = self._emulator.state
        path = unquote(raw_path)
        entry = state.record_request(self.command, path, query, body.value, arrived_at)
        delay = state.latency_seconds()
        reply, fault = self._api_gate(routes is APP_ROUTES, path, body)
        if fault is not None:
            delay += fault.latency_seconds
            if fault.hang_up_after_seconds is not None:
                self._pause(delay + fault.hang_up_after_seconds)
                self.close_connection = True  # a timeout: the connection closes without an answer
                return
            if fault.fail_status is not None:
                reply = self._error_reply(fault.fail_status)
        if reply is None:
            reply = self._route(routes, raw_path, query, body)
        self._pause(delay)
        state.record_status(entry, reply.status)  # before answering, so the log is complete once the client has it
        self._send_json(reply.status, reply.payload, reply.headers)

    def _api_gate(self, is_app_api: bool, path: str, body: _Body) -> tuple[_Reply | None, FaultDecision | None]:
        """A refusal that comes before routing (413, 401, 429), else the fault to inject, if any."""
        emulator = self._emulator
        if body.too_large:
            return _Reply(413, {"meta": {"error": f"request body over {MAX_API_BODY_BYTES} bytes"}}), None
        authorization = self.headers.get("Authorization")
        if is_app_api:
            authorized = _bearer_matches(authorization, emulator.app_api_key)
        else:
            authorized = _basic_matches(authorization, emulator.site_id, emulator.track_api_key)
        if not authorized:
            return _Reply(401, UNAUTHORIZED), None
        if is_app_api and not emulator.state.admit_app_request():
            return self._error_reply(429), None
        return None, emulator.state.draw_fault(self.command, path)

    def _error_reply(self, status: int) -> _Reply:
        if status == 429:
            headers = (("Retry-After", "1"),) if self._emulator.state.retry_after_header() else ()
            return _Reply(429, RATE_LIMITED, headers)
        return _Reply(status, {"meta": {"error": HTTPStatus(status).phrase}})

    def _route(self, routes: tuple[_Route, ...], raw_path: str, query: dict, body: _Body) -> _Reply:
        is_app_api = routes is APP_ROUTES
        matched = _match_route(routes, self.command, raw_path)
        if isinstance(matched, int):
            message = "Not Found" if matched == 404 else "Method Not Allowed"
            return _app_error(matched, message) if is_app_api else _Reply(matched, {"meta": {"error": message}})
        handler, params = matched
        try:
            return handler(_Call(self._emulator.state, params, query, body))
        except EmulatorInputError as error:
            return _app_error(400, str(error)) if is_app_api else _track_error(400, str(error))

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            # Wakes early when the server stops, so stop() never waits out an emulated delay.
            self._emulator.stopping.wait(seconds)

    # ---- control requests

    def _serve_control(self, raw_path: str, query: dict) -> None:
        body = self._read_body(MAX_CONTROL_BODY_BYTES)
        if body is None:
            return
        self._send_json(*self._control_reply(raw_path, query, body))

    def _control_reply(self, raw_path: str, query: dict, body: _Body) -> tuple[int, Any]:
        if not _is_loopback(self.client_address[0]):
            return 403, {"error": "control endpoints answer loopback clients only"}
        if body.too_large:
            return 413, {"error": f"request body over {MAX_CONTROL_BODY_BYTES} bytes"}
        if not body.valid:
            return 400, {"error": "the body is not valid JSON"}
        matched = _match_route(CONTROL_ROUTES, self.command, raw_path)
        if isinstance(matched, int):
            return matched, {"error": HTTPStatus(matched).phrase}
        handler, params = matched
        try:
            reply = handler(_Call(self._emulator.state, params, query, body))
        except EmulatorInputError as error:
            reply = _control_error(400, str(error))
        except IdentityConflict as error:
            reply = _control_error(409, str(error))
        return reply.status, reply.payload

    # ---- wire

    def _read_body(self, limit: int) -> _Body | None:
        """The request body, parsed; None after answering a request whose body cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the unread chunks would be taken for the next request
            self._send_json(411, {"error": "send the body with a Content-Length"})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_json(400, {"error": "invalid Content-Length"})
            return None
        if length > limit:
            self._discard_body(length)
            return _Body(empty=False, too_large=True)
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True  # the client went away mid-body
            return None
        return _Body.parse(data)

    def _discard_body(self, length: int) -> None:
        if length > MAX_DISCARDED_BODY_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = _json_bytes(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._answered = True
        self.wfile.write(body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = ACCEPT_QUEUE_SIZE

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS round trip that can stall start-up for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End keep-alive connections, whose threads would otherwise go on answering after stop()."""
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its own thread
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that disconnect mid-answer are routine (timeouts, benchmarks stopping); only real failures matter.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.exception("emulator connection from %s failed", client_address)


class EmulatorServer:
    """The emulator's HTTP server. `start()` serves from a daemon thread; `with EmulatorServer() as emulator:` too.

    `state` (EmulatorState) gives tests direct access to what the control endpoints do over HTTP.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        fixture: Mapping | str | Path | None = None,
        rate_limit: int | None = 10,
        latency_ms: float = 0,
        app_api_key: str = "emulator-app-key",
        site_id: str = "emulator-site",
        track_api_key: str = "emulator-track-key",
        retry_after_header: bool = True,
    ):
        self.host = host
        self.requested_port = port
        self.app_api_key = app_api_key
        self.site_id = site_id
        self.track_api_key = track_api_key
        self.state = EmulatorState(rate_limit=rate_limit, latency_ms=latency_ms, retry_after_header=retry_after_header)
        if fixture is not None:
            self.state.load_fixture(read_fixture(fixture))
        self.stopping = threading.Event()
        self._lifecycle_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Bind (port 0 picks a free port) and serve from a daemon thread. Raises OSError if the port is taken."""
        with self._lifecycle_lock:
            if self._httpd is not None:
                return self
            self.stopping.clear()
            self._httpd = _HTTPServer((self.host, self.requested_port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="cio-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; requests being answered end early. Safe to call twice."""
        with self._lifecycle_lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        self.stopping.set()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_connections()
        thread.join(timeout=5)

    def request_stop(self) -> None:
        """Ask serve_forever() to return. Only sets a flag, so it is safe inside a signal handler."""
        self.stopping.set()

    def serve_forever(self) -> None:
        """Serve until request_stop() or stop() is called, or KeyboardInterrupt; then stop cleanly."""
        self.start()
        try:
            self.stopping.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def requests(self, since: int = 0, path_prefix: str | None = None, method: str | None = None) -> list[dict]:
        """The request log (see EmulatorState.requests)."""
        return self.state.requests(since, path_prefix, method)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
