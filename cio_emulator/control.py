"""A small client for the emulator's /_emulator/ control endpoints, shared by tests, the demo run and benchmarks.
(These are the emulator's own endpoints, not Customer.io's.)"""

from collections import Counter

import requests


class EmulatorControl:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def _call(self, method: str, path: str, body=None):
        response = self.session.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self, fixture: dict | None = None) -> None:
        self._call("POST", "reset", {"fixture": fixture} if fixture else {})

    def load(self, fixture: dict) -> None:
        self._call("POST", "load", fixture)

    def configure(self, **options) -> None:
        """rate_limit, retry_after_header, latency_ms."""
        self._call("POST", "settings", options)

    def set_faults(self, **faults) -> None:
        """fail_rate, fail_status, latency_ms, timeout_rate, timeout_seconds, path_prefix, method,
        reject_identifiers; none clears."""
        self._call("POST", "faults", faults)

    def add_customer(self, **customer) -> dict:
        return self._call("POST", "customers", customer)

    def add_segment(self, **segment) -> dict:
        return self._call("POST", "segments", segment)

    def customer(self, identifier: str) -> dict | None:
        response = self.session.get(f"{self.url}/_emulator/customers/{requests.utils.quote(identifier, safe='')}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def events(self, identifier: str, name: str | None = None) -> list[dict]:
        """The events Customer.io recorded for a person (an email, an id or cio_<cio_id>), oldest first, each
        {"name", "id", "timestamp", "attributes", "received_at"}; only those called `name` if given. [] when there
        is no such person."""
        response = self.session.get(
            f"{self.url}/_emulator/customers/{requests.utils.quote(identifier, safe='')}/events",
            params={"name": name} if name is not None else None,
            timeout=30,
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return response.json()

    def all_events(self, name: str | None = None) -> list[dict]:
        """Every event recorded, oldest first: as events() gives them, plus "person": {"email", "id", "cio_id"}."""
        return self._call("GET", "events" if name is None else f"events?name={requests.utils.quote(name, safe='')}")

    def send_reporting_webhook(self, url: str, person: str, metric: str, signing_key: str, **options) -> dict:
        """Have the emulator post a signed reporting webhook (a message event about `person`) to `url`: options
        channel, event_id, link, failure_message, campaign_id, broadcast_id, action_id, body_content,
        bad_signature, timestamp_offset, old_timestamp, repeat (cio_emulator/reporting.py). Returns the event sent
        and the site's answers."""
        body = {"url": url, "person": person, "metric": metric, "signing_key": signing_key, **options}
        return self._call("POST", "reporting_webhooks", body)

    def requests(self, path_prefix: str = "") -> list[dict]:
        return [entry for entry in self._call("GET", "requests") if entry["path"].startswith(path_prefix)]

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    def call_counts(self) -> Counter:
        """Requests received, by API: {"app": n, "track": n}."""
        return Counter("app" if entry["path"].startswith("/v1/") else "track" for entry in self.requests())
