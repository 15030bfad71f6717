"""What bench/fuzz.py sends: generated webhook requests of every method, with odd query strings, content types and
bodies (non-JSON, deep nesting, huge strings, non-UTF-8, arrays, numbers, nulls, unicode emails, injection strings,
NUL characters, lone surrogates), odd idempotency headers and the key in the URL, in a header, wrong or missing.
The same seed gives the same requests."""

import json
import random

import requests

# Sent as passwords in bodies and query strings: must never be stored or logged.
SENT_PASSWORD = "fuzz-sent-Secret-77c3"

EMAILS = [
    "ann@example.com",
    "bob@example.com",
    "new{n}@example.com",
    "ünïcødé{n}@exämple.com",
    "José{n}@example.com",  # NFC
    "Jose\u0301{n}@example.com",  # NFD
    "UPPER{n}@EXAMPLE.COM",
    "plus+tag{n}@example.com",
    "a@b",
    "not-an-email",
    "",
    " ",
    "x" * 300 + "@example.com",
    "\u0000@example.com",
    "\ud800@example.com",
    "ann@example.com\u0000",
    "'; DROP TABLE users_user; --@example.com",
    "<script>alert(1)</script>@example.com",
    "${{jndi:ldap://x/a}}@example.com",
    "{{{{7*7}}}}@example.com",
    "../../etc/passwd",
]
STRINGS = [
    "",
    "x",
    "' OR '1'='1",
    '" OR ""="',
    "1; SELECT pg_sleep(5)--",
    "<img src=x onerror=alert(1)>",
    "%00",
    "\u0000",
    "\ud800",
    "\udfff\ud800",
    "😀" * 50,
    "A\u0301",
    "\u202e reversed",
    "null",
    "NaN",
    "-1",
    "99999999999999999999999999",
    "{{customer.email}}",
    "${7*7}",
    "\\x00\\u0000",
    "a" * 70_000,
]
ACTIONS = ["update_tags", "update", "add", "test", "", "unknown", "ADD", "add\u0000", "%00", "x" * 500, "über"]
METHODS = ["POST"] * 10 + ["GET"] * 3 + ["PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PATHS = ["/", "/", "/", "/webhooks/customerio", "/webhooks/customerio/", "//", "/?", "/index.php"]
CONTENT_TYPES = [
    "application/json",
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zzz",
    "application/json; charset=latin-1",
    "application/xml",
    None,
    "garbage/\u00ff",
]


def nested(rng: random.Random, depth: int):
    value = rng.choice([None, 1, "x", True, [], {}])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def json_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9)
    if depth > 3 or kind < 3:
        return rng.choice([None, True, False, 0, -1, 1.5, 10**30, rng.choice(STRINGS)[:200]])
    if kind < 5:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(STRINGS)[:40]: json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def body_for(rng: random.Random, n: int) -> bytes | str | None:
    email = rng.choice(EMAILS).format(n=n % 60)
    kind = rng.randrange(20)
    if kind < 6:
        body = {"email": email}
        if rng.random() < 0.3:
            body["cio_id"] = rng.choice(["ann", "bob", f"new{n % 50}", "", "\u0000", 5, None])
        if rng.random() < 0.3:
            body["attributes"] = {
                "first_name": rng.choice(STRINGS)[:300],
                "user_pass": SENT_PASSWORD,
                "password": SENT_PASSWORD,
                "role": rng.choice(["administrator", "customer", "", "\u0000"]),
            }
        return json.dumps(body, ensure_ascii=rng.random() < 0.5)
    if kind == 6:
        return "[" * rng.choice([100, 1000, 60_000])
    if kind == 7:
        return json.dumps({"email": email, "x": nested(rng, rng.choice([10, 31, 33, 200, 900]))})
    if kind == 8:
        return json.dumps({"email": email, "blob": rng.choice(STRINGS[-1:]) * rng.choice([1, 2])})
    if kind == 9:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if kind == 10:
        return rng.choice(["[]", "[1,2]", "123", "-0.5e999", "null", "true", '"email"', "{}", "   "])
    if kind == 11:
        return f"email={email}&password={SENT_PASSWORD}&role=administrator&x=%00&y=%ff%fe"
    if kind == 12:
        return '{"email": "' + email + '", "a": "\\ud800", "b": "\\u0000", "c\\u0000": 1}'
    if kind == 13:
        return json.dumps({"email": [email], "id": {"x": 1}})
    if kind == 14:
        return json.dumps({"customer": {"email": email, "id": rng.choice(["ann", 7, ""])}})
    if kind == 15:
        return json.dumps(json_value(rng))
    if kind == 16:
        return "{" + '"email": "ann@example.com",' * 5000 + "}"
    if kind == 17:
        return b"\xef\xbb\xbf" + json.dumps({"email": email}).encode()
    if kind == 18:
        return None
    return "not json at all " + rng.choice(STRINGS)[:100]


def quote(value: str) -> str:
    """URL-quoted, keeping %XX escapes as written and lone surrogates as their (invalid) UTF-8 bytes."""
    return requests.utils.quote(value.encode("utf-8", "surrogatepass"), safe="%")


def query_for(rng: random.Random, key: str, n: int) -> tuple[str, dict]:
    """(query string, headers) with the key right (mostly), wrong or missing, in the URL or a header."""
    headers = {}
    parts = []
    if rng.random() < 0.9:
        parts.append("wpf_action=" + quote(rng.choice(ACTIONS)))
    where = rng.random()
    presented = key if rng.random() < 0.75 else rng.choice(["", "wrong", key[:-1], key + "x", "%00", key.upper()])
    if where < 0.55:
        parts.append(f"access_key={presented}")
    elif where < 0.75:
        headers["Authorization"] = rng.choice(["Bearer ", "bearer ", "Basic ", "Bearer  x "]) + presented
    elif where < 0.9:
        headers["X-Access-Key"] = presented
    for name, values in [
        ("async", ["true", "1", "no", "\u0000", "yes" * 100]),
        ("send_notification", ["true", "false", "maybe"]),
        ("role", ["customer", "administrator", "", "%00", "x" * 1000]),
        ("password", [SENT_PASSWORD]),
        ("email", [rng.choice(EMAILS).format(n=n % 60)]),
        ("foo", ["%00", "%ff", "%ed%a0%80", "a&b", "=="]),
    ]:
        if rng.random() < 0.12:
            parts.append(f"{name}={quote(rng.choice(values))}")
    if rng.random() < 0.05:
        parts.append("wpf_action=test&wpf_action=add")
    for name in ("X-CIO-Idempotency-Key", "X-CIO-Delivery-ID"):
        if rng.random() < 0.3:
            headers[name] = rng.choice(
                [f"delivery-{n % 40}", "", "a b", "x" * 5000, "ünïcode".encode().decode("latin-1"), "same", "%00"]
            )
    return "&".join(parts), headers


def generate(rng: random.Random, key: str, count: int) -> list[dict]:
    sends = []
    for n in range(count):
        query, headers = query_for(rng, key, n)
        body = body_for(rng, n)
        content_type = rng.choice(CONTENT_TYPES)
        if content_type:
            headers["Content-Type"] = content_type
        path = rng.choice(PATHS)
        url = path + (("&" if "?" in path else "?") + query if query else "")
        if isinstance(body, str):
            # A lone surrogate goes out as the (invalid) UTF-8 bytes a careless client would send.
            body = body.encode("utf-8", "surrogatepass")
        sends.append({"method": rng.choice(METHODS), "url": url, "headers": headers, "body": body})
    return sends
