"""Reporting webhooks, sent by the emulator as Customer.io sends them: a message event (sent, delivered, opened,
clicked, bounced, ...) about a person the emulator knows, posted to a site's reporting endpoint and signed with the
webhook's signing key, so that tests and the demo drive the whole path over loopback HTTP.

`POST /_emulator/reporting_webhooks` (a control endpoint: loopback clients only) takes

    {"url": "http://127.0.0.1:8000/webhooks/customerio/reporting/", "person": "ann@example.com" (an email, an id or
     cio_<cio_id>), "metric": "clicked", "signing_key": "...",
     optional: "channel" ("email"), "event_id" (a new one), "link" (a clicked event's href), "failure_message",
     "campaign_id" (1 unless broadcast_id is given), "broadcast_id", "action_id" (1), "body_content" (false: with
     true, a sent event carries the message's subject and content, as with Customer.io's Body Content option),
     "bad_signature" (false: sign with another key), "timestamp_offset" (0: seconds added to the signing time;
     "old_timestamp": true is -600), "repeat" (1: send the same request, signature and all, this many times)}

and answers {"event_id": ..., "event": <the body sent>, "answers": [{"status": 200, "body": {...}}, ...]}, one
answer per request sent. A person the emulator does not know: 404.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import requests

from .records import EmulatorInputError, require_int

MAX_REPEAT = 100
OLD_TIMESTAMP_OFFSET = -600  # twice the five minutes a site accepts
SEND_TIMEOUT = 10  # Customer.io's own is 4 s; a test's slow server gets more


def sign(body: bytes, timestamp: int, key: str) -> str:
    """Customer.io's X-CIO-Signature: hex HMAC-SHA256 under the signing key of `v0:<timestamp>:<body>`."""
    return hmac.new(key.encode(), b"v0:" + str(timestamp).encode() + b":" + body, hashlib.sha256).hexdigest()


def new_event_id() -> str:
    """A 26-character id shaped like Customer.io's (a ULID's length and alphabet)."""
    return uuid.uuid4().hex[:26].upper()


def build_event(person: Mapping, request: Mapping) -> dict:
    """The reporting event Customer.io would send about `person` (the emulator's stored customer)."""
    channel = _text(request, "channel", "email")
    metric = _text(request, "metric")
    if not metric:
        raise EmulatorInputError("metric is required (sent, delivered, opened, clicked, bounced, ...)")
    identifiers = {"id": person.get("id"), "email": person.get("email"), "cio_id": person.get("cio_id")}
    data: dict[str, Any] = {
        "identifiers": {name: value for name, value in identifiers.items() if value},
        "customer_id": person.get("id") or "",
        "delivery_id": uuid.uuid4().hex,
        "recipient": person.get("email") or "" if channel == "email" else _text(request, "recipient", "device"),
        "action_id": require_int(request.get("action_id", 1), "action_id"),
    }
    if "broadcast_id" in request:
        data["broadcast_id"] = require_int(request["broadcast_id"], "broadcast_id")
    else:
        data["campaign_id"] = require_int(request.get("campaign_id", 1), "campaign_id")
    if request.get("link") is not None:
        data["href"] = _text(request, "link")
        data["link_id"] = 1
    if request.get("failure_message") is not None:
        data["failure_message"] = _text(request, "failure_message")
    if request.get("body_content"):
        data["subject"] = f"A message for {person.get('email') or person.get('id')}"
        data["content"] = "<p>The message's body, which Customer.io sends with Body Content on.</p>"
    return {
        "event_id": _text(request, "event_id") or new_event_id(),
        "object_type": channel,
        "metric": metric,
        "timestamp": int(time.time()),
        "data": data,
    }


def send(state, request: Any) -> tuple[int, dict]:
    """The control endpoint's work: (status, answer)."""
    if not isinstance(request, Mapping):
        raise EmulatorInputError("the body must be a JSON object")
    url, key, person_ref = _text(request, "url"), _text(request, "signing_key"), _text(request, "person")
    if not url.startswith(("http://", "https://")):
        raise EmulatorInputError("url must be the site's reporting endpoint (http:// or https://)")
    if not key:
        raise EmulatorInputError("signing_key is required")
    person = state.customer(person_ref) if person_ref else None
    if person is None:
        return 404, {"error": f"no such customer: {person_ref!r}"}
    repeat = require_int(request.get("repeat", 1), "repeat")
    if not 1 <= repeat <= MAX_REPEAT:
        raise EmulatorInputError(f"repeat must be from 1 to {MAX_REPEAT}")
    offset = (
        OLD_TIMESTAMP_OFFSET
        if request.get("old_timestamp")
        else require_int(request.get("timestamp_offset", 0), "timestamp_offset")
    )
    event = build_event(person, request)
    body = json.dumps(event).encode()
    timestamp = int(time.time()) + offset
    signing_key = key + "-not-it" if request.get("bad_signature") else key
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Customer.io Emulator",
        "X-CIO-Timestamp": str(timestamp),
        "X-CIO-Signature": sign(body, timestamp, signing_key),
    }
    answers = []
    with requests.Session() as session:
        for _ in range(repeat):
            try:
                response = session.post(url, data=body, headers=headers, timeout=SEND_TIMEOUT)
            except requests.RequestException as error:
                answers.append({"status": None, "error": f"{type(error).__name__}: {error}"})
                continue
            answers.append({"status": response.status_code, "body": _json_or_text(response)})
    return 200, {"event_id": event["event_id"], "event": event, "answers": answers}


def _text(request: Mapping, name: str, default: str = "") -> str:
    value = request.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise EmulatorInputError(f"{name} must be a string")
    return str(value)


def _json_or_text(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
