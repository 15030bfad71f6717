"""The wire under the Customer.io client: where it connects and with which credentials, and how every HTTP call goes
out and what its answer means.

Every call has connect and read timeouts, retries 429/5xx/timeouts/connection errors with exponential backoff and
full jitter (honouring Retry-After, in seconds or as a date), and takes an optional deadline covering limiter waits
and retries together. App API calls wait for the shared rate limiter first.
"""

import base64
import email.utils
import logging
import math
import random
import time
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

# The client's log lines keep one logger name, whichever of its modules writes them.
logger = logging.getLogger("cio.client")

REGION_HOSTS = {
    "us": ("https://api.customer.io", "https://track.customer.io"),
    "eu": ("https://api-eu.customer.io", "https://track-eu.customer.io"),
}

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


def path_segment(identifier) -> str:
    """An identifier as one URL path segment: `a+b@x.io` must arrive as itself, not as `a b@x.io`."""
    return quote(str(identifier), safe="")


class Transport:
    """Authenticated, timed, retried HTTP calls to the App API (Bearer key) and the Track API (HTTP Basic site id
    and key). The API classes build on `_app` and `_track`."""

    def __init__(self, config: ClientConfig, *, session: requests.Session | None = None):
        self.config = config
        self.session = session or requests.Session()
        # Named apart from the grant-stamped row of earlier versions ("app_api"), whose processes cannot read this one's
        # entries: during a rolling upgrade the two budgets overlap for a moment (429s, retried) rather than fail.
        self.limiter = SharedRateLimiter(
            "app_api_answers",
            config.app_api_rate,
            longest_request=2 * (config.connect_timeout + config.read_timeout) + 5,
        )

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
            started = time.monotonic()
            try:
                response, error = self._send(method, base_url, path, headers, params, json, data, deadline)
            finally:
                if api == "app":
                    self.limiter.finished(time.monotonic())  # it reached Customer.io by now (cio.ratelimit)
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

    def _send(self, method, base_url, path, headers, params, json, data, deadline):
        """One attempt: (response or None, the error it makes or None)."""
        timeout = self._timeout(method, path, deadline)
        try:
            response = self.session.request(
                method, base_url + path, headers=headers, params=params, json=json, data=data, timeout=timeout
            )
        except requests.Timeout:
            return None, UpstreamError(f"Customer.io {method} {path}: timed out", method=method, path=path)
        except requests.RequestException as exc:
            return None, UpstreamError(
                f"Customer.io {method} {path}: connection failed ({type(exc).__name__})", method=method, path=path
            )
        return response, None if response.ok else self._error_for(response, method, path)

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

    def _record(self, api, method, path, response, duration):
        status = response.status_code if response is not None else None
        logger.debug("Customer.io %s %s -> %s in %.0f ms", method, path, status, duration * 1000)
        # The sender is the client class (CustomerIOClient), which receivers filter on.
        api_call_finished.send(sender=type(self), api=api, method=method, path=path, status=status, duration=duration)


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
