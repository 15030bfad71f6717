"""The one Customer.io client. Nothing else in the project builds Customer.io URLs.

App API (reads; Bearer key; rate limited by the shared limiter) and Track API (writes; HTTP Basic site id and key).
Every call has connect and read timeouts, retries 429/5xx/timeouts/connection errors with exponential backoff and
full jitter (honouring Retry-After, in seconds or as a date), and takes an optional deadline covering limiter waits
and retries together.
"""

import base64
import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import requests
from django.conf import settings
from django.dispatch import Signal

from .errors import (
    BadRequest,
    ContactNotFound,
    CustomerIOError,
    DeadlineExceeded,
    NotConfigured,
    RateLimited,
    Unauthorized,
    UpstreamError,
)
from .ratelimit import SharedRateLimiter

logger = logging.getLogger("cio.client")

REGION_HOSTS = {
    "us": ("https://api.customer.io", "https://track.customer.io"),
    "eu": ("https://api-eu.customer.io", "https://track-eu.customer.io"),
}

ATTRIBUTES_BATCH_LIMIT = 100
# Track API: people added to or removed from a manual segment in one call.
SEGMENT_CHANGE_LIMIT = 1000
MEMBERSHIP_PAGE_LIMIT = 30_000
# Customer.io's documented v2 batch limits.
BATCH_REQUEST_MAX_BYTES = 500 * 1024
BATCH_OPERATION_MAX_BYTES = 32 * 1024

# Sent after every HTTP attempt (retries included), for tests, benchmarks and metrics:
# api ("app" | "track"), method, path, status (None when no answer came), duration (seconds).
api_call_finished = Signal()


@dataclass(frozen=True)
class ClientConfig:
    app_api_url: str
    track_api_url: str
    app_api_key: str = field(default="", repr=False)
    site_id: str = ""
    track_api_key: str = field(default="", repr=False)
    app_api_rate: int = 10
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    @classmethod
    def from_settings(cls) -> "ClientConfig":
        app_host, track_host = REGION_HOSTS[settings.CUSTOMERIO_REGION]
        return cls(
            app_api_url=(settings.CUSTOMERIO_APP_API_URL or app_host).rstrip("/"),
            track_api_url=(settings.CUSTOMERIO_TRACK_API_URL or track_host).rstrip("/"),
            app_api_key=settings.CUSTOMERIO_APP_API_KEY,
            site_id=settings.CUSTOMERIO_SITE_ID,
            track_api_key=settings.CUSTOMERIO_TRACK_API_KEY,
            app_api_rate=settings.CUSTOMERIO_APP_API_RATE,
            connect_timeout=settings.CUSTOMERIO_CONNECT_TIMEOUT,
            read_timeout=settings.CUSTOMERIO_READ_TIMEOUT,
            max_retries=settings.CUSTOMERIO_MAX_RETRIES,
            backoff_base=settings.CUSTOMERIO_RETRY_BACKOFF,
        )


@dataclass
class BatchFailure:
    index: int  # position in the operations passed to batch()
    reason: str


@dataclass
class BatchResult:
    sent: int = 0
    requests: int = 0
    failures: list[BatchFailure] = field(default_factory=list)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds from now: delta-seconds ("120") or an HTTP date ("Wed, 21 Oct 2026 07:28:00 GMT").
    None when absent or unreadable."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def deadline_in(seconds: float | None) -> float | None:
    """A deadline `seconds` from now, in the form every client method takes."""
    return None if seconds is None else time.monotonic() + seconds


def identify_operation(identifiers: dict, attributes: dict, update_only: bool = True) -> dict:
    """One /api/v2/batch person identify operation. `identifiers` holds exactly one of email, id, cio_id."""
    body = {**attributes, "_update": True} if update_only else dict(attributes)
    return {"type": "person", "identifiers": identifiers, "action": "identify", "attributes": body}


class CustomerIOClient:
    def __init__(self, config: ClientConfig, *, session: requests.Session | None = None):
        self.config = config
        self.session = session or requests.Session()
        self.limiter = SharedRateLimiter("app_api", config.app_api_rate)

    # App API -------------------------------------------------------------------------------------------------

    def list_segments(self, *, deadline: float | None = None) -> list[dict]:
        return self._app("GET", "/v1/segments", deadline=deadline).get("segments") or []

    def get_segment(self, segment_id: int, *, deadline: float | None = None) -> dict:
        """One segment: {"id", "name", "type" ("manual" | "dynamic"), ...}."""
        return self._app("GET", f"/v1/segments/{int(segment_id)}", deadline=deadline).get("segment") or {}

    def get_segment_count(self, segment_id: int, *, deadline: float | None = None) -> int:
        """How many people are in the segment now."""
        answer = self._app("GET", f"/v1/segments/{int(segment_id)}/customer_count", deadline=deadline)
        return int(answer.get("count") or 0)

    def get_attributes(self, identifier: str, id_type: str = "email", *, deadline: float | None = None) -> dict:
        """The person as Customer.io returns it: {"id", "identifiers", "attributes", "timestamps", ...}."""
        path = f"/v1/customers/{_segment(identifier)}/attributes"
        return self._app("GET", path, params={"id_type": id_type}, deadline=deadline)["customer"]

    def get_segments(self, identifier: str, id_type: str = "email", *, deadline: float | None = None) -> list[dict]:
        path = f"/v1/customers/{_segment(identifier)}/segments"
        return self._app("GET", path, params={"id_type": id_type}, deadline=deadline).get("segments") or []

    def get_attributes_batch(
        self, ids: Iterable[str], id_type: str = "email", *, deadline: float | None = None
    ) -> list[dict]:
        """People for many identifiers, 100 per call; unknown identifiers are simply absent."""
        ids = list(ids)
        people = []
        for start in range(0, len(ids), ATTRIBUTES_BATCH_LIMIT):
            chunk = ids[start : start + ATTRIBUTES_BATCH_LIMIT]
            answer = self._app(
                "POST", "/v1/customers/attributes", params={"id_type": id_type}, json={"ids": chunk}, deadline=deadline
            )
            people.extend(entry["customer"] for entry in answer.get("customers") or [])
        return people

    def iter_segment_members(
        self, segment_id: int, page_size: int = MEMBERSHIP_PAGE_LIMIT, *, start: str = "", deadline: float | None = None
    ) -> Iterator[dict]:
        """Identifiers ({"email", "id", "cio_id"}) of every member, page by page. `email` may be missing or None
        in workspaces that do not identify people by email."""
        for page in self.iter_segment_member_pages(segment_id, page_size, start=start, deadline=deadline):
            yield from page["identifiers"]

    def iter_segment_member_pages(
        self, segment_id: int, page_size: int = MEMBERSHIP_PAGE_LIMIT, *, start: str = "", deadline: float | None = None
    ) -> Iterator[dict]:
        """Pages of {"identifiers": [...], "next": cursor}; a resumable caller keeps `next`."""
        limit = max(1, min(page_size, MEMBERSHIP_PAGE_LIMIT))
        cursor = start
        while True:
            params = {"limit": limit, **({"start": cursor} if cursor else {})}
            answer = self._app("GET", f"/v1/segments/{int(segment_id)}/membership", params=params, deadline=deadline)
            identifiers = answer.get("identifiers")
            if identifiers is None:
                identifiers = [{"id": value} for value in answer.get("ids") or []]
            cursor = answer.get("next") or ""
            yield {"identifiers": identifiers, "next": cursor}
            if not cursor:
                return

    # Track API -----------------------------------------------------------------------------------------------

    def identify(
        self, identifier: str, attributes: dict, update_only: bool = True, *, deadline: float | None = None
    ) -> None:
        """Set attributes on a person (`cio_<cio_id>` identifies by cio_id). With update_only Customer.io answers
        200 even when nobody has that identifier, so only a non-2xx answer is a failure."""
        body = {**attributes, "_update": True} if update_only else dict(attributes)
        self._track("PUT", f"/api/v1/customers/{_segment(identifier)}", json=body, deadline=deadline)

    def add_to_segment(
        self, segment_id: int, ids: list[str], id_type: str = "cio_id", *, deadline: float | None = None
    ) -> int:
        """Add people to a manual segment, SEGMENT_CHANGE_LIMIT per call. Customer.io creates a person for an id it
        does not know: send only people it knows. Returns the number of calls made."""
        return self._change_segment("add_customers", segment_id, ids, id_type, deadline)

    def remove_from_segment(
        self, segment_id: int, ids: list[str], id_type: str = "cio_id", *, deadline: float | None = None
    ) -> int:
        """Remove people from a manual segment, SEGMENT_CHANGE_LIMIT per call. Returns the number of calls made."""
        return self._change_segment("remove_customers", segment_id, ids, id_type, deadline)

    def _change_segment(self, verb: str, segment_id: int, ids: list[str], id_type: str, deadline) -> int:
        if id_type not in ("id", "email", "cio_id"):
            raise ValueError(f"id_type must be id, email or cio_id, not {id_type!r}")
        calls = 0
        for start in range(0, len(ids), SEGMENT_CHANGE_LIMIT):
            chunk = list(ids[start : start + SEGMENT_CHANGE_LIMIT])
            path = f"/api/v1/segments/{int(segment_id)}/{verb}"
            self._track("POST", path, params={"id_type": id_type}, json={"ids": chunk}, deadline=deadline)
            calls += 1
        return calls

    def batch(self, operations: list[dict], *, deadline: float | None = None) -> BatchResult:
        """Send v2 batch operations in as few requests as the size limits allow. Returns the failures by index
        (from 207 answers, operations too large to send, or requests that failed as a whole)."""
        result = BatchResult()
        chunk: list[tuple[int, bytes]] = []
        chunk_bytes = len(b'{"batch":[]}')
        for index, operation in enumerate(operations):
            encoded = json.dumps(operation, separators=(",", ":")).encode()
            if len(encoded) > BATCH_OPERATION_MAX_BYTES:
                result.failures.append(BatchFailure(index, "operation larger than 32 KB"))
                continue
            if chunk and chunk_bytes + len(encoded) + 1 >= BATCH_REQUEST_MAX_BYTES:
                self._send_batch_chunk(chunk, result, deadline)
                chunk, chunk_bytes = [], len(b'{"batch":[]}')
            chunk.append((index, encoded))
            chunk_bytes += len(encoded) + 1
        if chunk:
            self._send_batch_chunk(chunk, result, deadline)
        return result

    def _send_batch_chunk(self, chunk: list[tuple[int, bytes]], result: BatchResult, deadline) -> None:
        body = b'{"batch":[' + b",".join(encoded for _, encoded in chunk) + b"]}"
        result.requests += 1
        try:
            answer = self._track("POST", "/api/v2/batch", data=body, deadline=deadline)
        except Unauthorized:
            raise
        except CustomerIOError as exc:
            result.failures.extend(BatchFailure(index, str(exc)) for index, _ in chunk)
            return
        failed_positions = set()
        for error in answer.get("errors") or []:
            position = error.get("batch_index")
            if isinstance(position, int) and 0 <= position < len(chunk) and position not in failed_positions:
                failed_positions.add(position)
                reason = error.get("message") or error.get("reason") or "rejected"
                result.failures.append(BatchFailure(chunk[position][0], str(reason)))
        result.sent += len(chunk) - len(failed_positions)

    # The wire --------------------------------------------------------------------------------------------------

    def require_credentials(self, *, app: bool = False, track: bool = False) -> None:
        """Raise NotConfigured now when credentials a job will need are missing, rather than halfway through it."""
        if app and not self.config.app_api_key:
            raise NotConfigured("Customer.io App API key is not set (CUSTOMERIO_APP_API_KEY)")
        if track and not (self.config.site_id and self.config.track_api_key):
            raise NotConfigured("Customer.io Track API credentials are not set (CUSTOMERIO_SITE_ID, _TRACK_API_KEY)")

    def _app(self, method, path, *, params=None, json=None, deadline=None) -> dict:
        self.require_credentials(app=True)
        headers = {"Authorization": f"Bearer {self.config.app_api_key}"}
        return self._request(
            "app", method, self.config.app_api_url, path, headers=headers, params=params, json=json, deadline=deadline
        )

    def _track(self, method, path, *, params=None, json=None, data=None, deadline=None) -> dict:
        self.require_credentials(track=True)
        credentials = f"{self.config.site_id}:{self.config.track_api_key}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
        if data is not None:
            headers["Content-Type"] = "application/json"
        return self._request(
            "track",
            method,
            self.config.track_api_url,
            path,
            headers=headers,
            params=params,
            json=json,
            data=data,
            deadline=deadline,
        )

    def _request(self, api, method, base_url, path, *, headers, params=None, json=None, data=None, deadline=None):
        attempt = 0
        while True:
            attempt += 1
            if api == "app":
                self.limiter.acquire(deadline)
            timeout = self._timeout(method, path, deadline)
            started = time.monotonic()
            response = None
            try:
                response = self.session.request(
                    method, base_url + path, headers=headers, params=params, json=json, data=data, timeout=timeout
                )
                error = None if response.ok else self._error_for(response, method, path)
            except requests.Timeout:
                error = UpstreamError(f"Customer.io {method} {path}: timed out", method=method, path=path)
            except requests.RequestException as exc:
                error = UpstreamError(
                    f"Customer.io {method} {path}: connection failed ({type(exc).__name__})", method=method, path=path
                )
            self._record(api, method, path, response, time.monotonic() - started)
            if error is None:
                return _json_or_empty(response)
            if not error.retryable or attempt > self.config.max_retries:
                raise error
            delay = self._retry_delay(attempt, response)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise error
            logger.info("Customer.io %s %s: %s; retrying in %.2fs", method, path, _status_text(error), delay)
            time.sleep(delay)

    def _timeout(self, method, path, deadline):
        connect, read = self.config.connect_timeout, self.config.read_timeout
        if deadline is None:
            return (connect, read)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(f"Customer.io {method} {path}: deadline passed", method=method, path=path)
        return (min(connect, remaining), min(read, remaining))

    def _retry_delay(self, attempt: int, response) -> float:
        retry_after = _retry_after_seconds(response.headers.get("Retry-After") if response is not None else None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.backoff_cap)
        ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** (attempt - 1))
        # Full jitter (AWS's recommendation, "Exponential Backoff And Jitter"): a wait anywhere from 0 to the
        # ceiling spreads the retries of many workers hit by the same outage the most, for the fewest calls in all.
        # An early retry is cheap here: App API retries still wait for the shared rate limiter's slot.
        return random.uniform(0, ceiling)

    @staticmethod
    def _error_for(response, method, path) -> CustomerIOError:
        status = response.status_code
        detail = _error_detail(response)
        message = f"Customer.io {method} {path}: {status}" + (f" {detail}" if detail else "")
        kind = (
            RateLimited
            if status == 429
            else UpstreamError
            if status >= 500
            else ContactNotFound
            if status == 404
            else Unauthorized
            if status in (401, 403)
            else BadRequest
        )
        return kind(message, method=method, path=path, status=status)

    @staticmethod
    def _record(api, method, path, response, duration):
        status = response.status_code if response is not None else None
        logger.debug("Customer.io %s %s -> %s in %.0f ms", method, path, status, duration * 1000)
        api_call_finished.send(
            sender=CustomerIOClient, api=api, method=method, path=path, status=status, duration=duration
        )


def _segment(identifier) -> str:
    """An identifier as one URL path segment: `a+b@x.io` must arrive as itself, not as `a b@x.io`."""
    return quote(str(identifier), safe="")


def _json_or_empty(response) -> dict:
    if not response.content:
        return {}
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {"data": answer}


def _error_detail(response) -> str:
    """Customer.io's own words for an error: errors[0].detail, or meta.error / meta.errors."""
    try:
        answer = response.json()
    except ValueError:
        return ""
    if not isinstance(answer, dict):
        return ""
    errors = answer.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        detail = errors[0].get("detail") or errors[0].get("message") or errors[0].get("reason")
        if detail:
            return str(detail)[:300]
    meta = answer.get("meta")
    if isinstance(meta, dict):
        detail = meta.get("error") or meta.get("errors")
        if isinstance(detail, list):
            detail = "; ".join(str(item) for item in detail)
        if detail:
            return str(detail)[:300]
    return ""


def _status_text(error: CustomerIOError) -> str:
    return str(error.status) if error.status else type(error).__name__


_clients = threading.local()


def get_client() -> CustomerIOClient:
    """The client configured from settings. One per thread (a requests.Session is not shared across threads), so
    connections are reused; rebuilt when the settings change (tests point it at the emulator)."""
    config = ClientConfig.from_settings()
    cached = getattr(_clients, "client", None)
    if cached is None or cached.config != config:
        cached = CustomerIOClient(config)
        _clients.client = cached
    return cached
