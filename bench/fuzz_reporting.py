"""What bench/fuzz.py sends the reporting webhook (POST /webhooks/customerio/reporting/): generated message events,
signed right (mostly), with another key, with garbage, unsigned, with a timestamp too old or too far ahead, or with the
body changed after signing; bodies valid, odd (wrong types, huge strings, NUL characters, lone surrogates, deep
nesting), not JSON, not UTF-8, too large; event ids from a small pool, so that retries come too. The signature is made
when the request is sent (sign_at_send), so that a long run stays inside the five minutes a site accepts. The same
seed gives the same requests."""

import hashlib
import hmac
import json
import random
import re

PATHS = ["/webhooks/customerio/reporting/", "/webhooks/customerio/reporting/", "/webhooks/customerio/reporting"]
METHODS = ["POST"] * 24 + ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
METRICS = ["sent", "delivered", "opened", "clicked", "bounced", "spammed", "unsubscribed", "failed", "", "x" * 40]
CHANNELS = ["email", "push", "sms", "in_app", "webhook", "customer", "", "\u0000", "x" * 40]
ODD = [None, True, 0, -1, 1.5, 10**30, "", "\u0000", "\ud800", "😀" * 20, "x" * 3000, [], {}, {"a": [1, {"b": 2}]}]
SIGNATURES = ["right"] * 12 + [
    "other key",
    "garbage",
    "unsigned",
    "no timestamp",
    "old",
    "ahead",
    "text time",
    "tamper",
]


def signature(body: bytes, timestamp: str, key: str) -> str:
    return hmac.new(key.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def event_body(rng: random.Random, n: int) -> dict:
    data = {
        "identifiers": {"email": rng.choice(["ann@example.com", f"new{n % 30}@example.com", "\u0000@x", 5, None])},
        "recipient": rng.choice(["ann@example.com", "+15555550100", "", rng.choice(ODD)]),
        "delivery_id": rng.choice([f"d-{n}", rng.choice(ODD)]),
        "campaign_id": rng.choice([12, "12", -5, 2**70, rng.choice(ODD)]),
        "action_id": rng.choice([1, rng.choice(ODD)]),
        "href": rng.choice(["https://example.com/x", "javascript:alert(1)", "h" * 5000, rng.choice(ODD)]),
        "failure_message": rng.choice(["550 mailbox unavailable", rng.choice(ODD)]),
        "subject": "secret subject " + str(n),
        "content": "<p>secret content</p>",
    }
    body = {
        # Mostly usable ids, from a small pool (so that retries come too), sometimes not.
        "event_id": rng.choice([f"fuzz-evt-{n % 400}"] * 3 + [f"fuzz-evt-{n}"] * 3 + ["", "e" * 101, rng.choice(ODD)]),
        "object_type": rng.choice(CHANNELS),
        "metric": rng.choice(METRICS),
        "timestamp": rng.choice([1_765_000_000, "1765000000", -1, 10**15, rng.choice(ODD)]),
        "data": data if rng.random() < 0.9 else rng.choice(ODD),
    }
    if rng.random() < 0.2:
        body.pop(rng.choice(list(body)), None)
    return body


def raw_body(rng: random.Random, n: int) -> bytes:
    kind = rng.randrange(12)
    if kind < 8:
        return json.dumps(event_body(rng, n), ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if kind == 8:
        return b"[" * rng.choice([10, 40, 5000]) + b"]" * 10
    if kind == 9:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
    if kind == 10:
        return json.dumps({"event_id": f"big-{n}", "metric": "sent", "pad": "x" * 70_000}).encode()
    return rng.choice([b"", b"null", b"[]", b'"event"', b"{}", b"event_id=1&metric=sent"])


def generate(rng: random.Random, count: int) -> list[dict]:
    """Request specs: method, url, headers (without the signature's), body, and how to sign it at send time."""
    sends = []
    for n in range(count):
        content_type = rng.choice(["application/json"] * 4 + ["text/plain", "multipart/form-data; boundary=z"])
        headers = {"Content-Type": content_type}
        sends.append(
            {
                "method": rng.choice(METHODS),
                "url": rng.choice(PATHS),
                "headers": headers,
                "body": raw_body(rng, n),
                "sign": rng.choice(SIGNATURES),
            }
        )
    return sends


def sign_at_send(request: dict, key: str, now: float) -> dict:
    """The request's headers with its signature made now, as its `sign` says."""
    headers = dict(request["headers"])
    how, body, timestamp = request["sign"], request["body"], str(int(now))
    if how == "unsigned":
        headers["X-CIO-Timestamp"] = timestamp
        return headers
    if how == "old":
        timestamp = str(int(now) - 3600)
    elif how == "ahead":
        timestamp = str(int(now) + 3600)
    signed_body = body + b" " if how == "tamper" else body
    headers["X-CIO-Signature"] = {
        "other key": signature(body, timestamp, key + "-not-it"),
        "garbage": "zz" * 32,
    }.get(how) or signature(signed_body, timestamp, key)
    if how == "text time":
        timestamp = "yesterday"
    if how != "no timestamp":
        headers["X-CIO-Timestamp"] = timestamp
    return headers


def stored_event_id(request: dict) -> str:
    """The event id the site stores for this request's body, cleaned as the site cleans text it receives (NUL
    removed, lone surrogates replaced: users.text)."""
    event_id = json.loads(request["body"])["event_id"]
    return re.sub("[\ud800-\udfff]", "\ufffd", event_id.replace("\x00", "")).strip()


def storable(request: dict) -> bool:
    """Whether the site may store this request's event: a POST signed right, now."""
    return request["method"] == "POST" and request["sign"] == "right"
