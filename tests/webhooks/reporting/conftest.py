"""The reporting webhook's tests: events signed as Customer.io signs them, sent through the test client."""

import hashlib
import hmac
import json
import time

import pytest

from webhooks.message_events import waking

KEY = "reporting-signing-key-current-0123456789"
OLD_KEY = "reporting-signing-key-previous-987654321"
URL = "/webhooks/customerio/reporting/"


def event(metric="delivered", event_id="01HREPORTING0000000000001", channel="email", **data) -> dict:
    """A Customer.io reporting event about Ann (identifiers and recipient), with `data` added."""
    return {
        "event_id": event_id,
        "object_type": channel,
        "metric": metric,
        "timestamp": 1_765_000_000,
        "data": {
            "identifiers": {"id": "ann", "email": "ann@example.com", "cio_id": "cio-ann"},
            "customer_id": "ann",
            "recipient": "ann@example.com",
            "delivery_id": "RAECAAFwnUSneIa0ZXkmq8EdkAM==",
            "campaign_id": 12,
            "action_id": 36,
            **data,
        },
    }


def signature(body: bytes, timestamp: int | str, key: str = KEY) -> str:
    return hmac.new(key.encode(), b"v0:" + str(timestamp).encode() + b":" + body, hashlib.sha256).hexdigest()


def post(client, body, *, key=KEY, timestamp=None, signed=None, headers=None, **extra):
    """POST `body` (a dict, or raw bytes) signed with `key` at `timestamp` (now by default); `signed` replaces the
    signature. Extra keyword arguments go to the test client (REMOTE_ADDR, ...)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    sent = {"X-CIO-Timestamp": str(timestamp), "X-CIO-Signature": signed or signature(raw, timestamp, key)}
    sent.update(headers or {})
    sent = {name: value for name, value in sent.items() if value is not None}
    return client.post(URL, raw, content_type="application/json", headers=sent, **extra)


@pytest.fixture(autouse=True)
def signing_keys(settings):
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = [KEY]
    waking.forget()
    yield
    waking.forget()
