"""A Customer.io stand-in: a real HTTP server on loopback that answers like Customer.io's App API and Track API.

Customer.io cannot be reached from tests, the demo run (`make run`) or benchmarks, so this server takes its place. It
keeps people and segments in memory and answers the endpoints this project uses, with the shapes, status codes and
limits Customer.io documents. As a Django app (for `manage.py cio_emulator`) it is installed only with DEBUG on or
ENABLE_CIO_EMULATOR=true: production has no use for it.

Modules: records (people, segments, events, value rules), fixtures (the JSON to load), faults (injected failures,
settings), people (the people and segments held, and what Customer.io's writes do to them), state (all of it behind
one lock), batch (what a /api/v2/batch entry asks for, or why it is refused), routes (the endpoints), reporting (the
signed reporting webhooks it sends a site), handler (HTTP: authentication, the rate limit and faults before the
routes), server (start and stop), control (a client for /_emulator/).

App API (header `Authorization: Bearer <app_api_key>`; rate limited, see below):
    GET  /v1/segments
    GET  /v1/segments/{segment_id}
    GET  /v1/segments/{segment_id}/membership?limit=N&start=CURSOR
    GET  /v1/segments/{segment_id}/customer_count
    GET  /v1/customers/{identifier}/attributes?id_type=id|email|cio_id
    GET  /v1/customers/{identifier}/segments?id_type=id|email|cio_id
    POST /v1/customers/attributes?id_type=id|email|cio_id        body {"ids": [...]} (at most 100)

Track API (HTTP Basic `site_id:track_api_key`; not rate limited):
    PUT  /api/v1/customers/{identifier}     identifier: an email, an id, or cio_<cio_id>
    POST /api/v2/batch                      person identify and event entries (see below)
    POST /api/v1/segments/{segment_id}/add_customers?id_type=id|email|cio_id      body {"ids": [...]} (at most 1,000;
    POST /api/v1/segments/{segment_id}/remove_customers?id_type=...               manual segments only; adding an
                                                                                  unknown email or id creates them)

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
  * /api/v2/batch: a body over 500 KB is answered 413 and nothing in it applies. Otherwise the entries apply in the
    order sent (an identify, then an event for the same new person, works) and the ones Customer.io would refuse
    are answered 207 {"errors": [{"batch_index", "reason", "field", "message"}]}: over 32 KB ("too_large"), not a
    person, an action other than identify or event, not exactly one of id/email/cio_id, attributes not an object;
    for an event also a missing or empty name (names are trimmed), a timestamp that is not an integer, an id that
    is not a ULID. Everything else is answered 200 {}.
  * An event is recorded for its person (name, attributes, timestamp, id, received_at), never twice with the same
    id (a ULID, compared without letter case) for one person; the repeat is still answered as accepted. An event for
    an email or id nobody has creates that person; one for an unknown cio_id is dropped. Events change no attribute.
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
    GET    /_emulator/customers/{email | id | cio_<cio_id>}/events[?name=N]   -> the person's events, oldest first:
               [{"name", "id", "timestamp", "attributes", "received_at"}, ...] (`id` and `timestamp` null when the
               entry had none; `received_at` Unix seconds, a float), or 404 when there is no such person
    GET    /_emulator/events[?name=N]                         -> everybody's events, oldest first, each as above plus
               "person": {"email", "id", "cio_id"}
    POST   /_emulator/segments    one segment, fixture shape   -> the stored segment
    GET    /_emulator/faults                                  -> the fault plan in force
    POST   /_emulator/faults      {"fail_rate", "fail_status", "latency_ms", "timeout_rate", "timeout_seconds",
               "path_prefix", "method", "seed", "reject_identifiers"} (all optional; {} clears) -> the fault plan in
               force. `reject_identifiers` (emails, ids or cio_ids, compared exactly) makes /api/v2/batch refuse the
               identify and event entries naming them, answering 207 with their batch_index while applying the
               rest, as Customer.io does with entries it finds invalid.
    GET    /_emulator/settings                                -> {"rate_limit", "retry_after_header", "latency_ms"}
    POST   /_emulator/settings    any of those keys           -> the settings in force
    POST   /_emulator/reset       optional {"fixture": {...}}: clears people (and their events), segments, log,
               faults and the rate limiter's window (settings stay) -> {"segments": N, "customers": N}
    POST   /_emulator/load        a fixture, added to what is there (upserts) -> {"segments": N, "customers": N}
    GET    /_emulator/status                                  -> {"segments": N, "customers": N, "requests": N}
    POST   /_emulator/reporting_webhooks  {"url", "person", "metric", "signing_key", options} -> the message event it
               signed and posted to the site's reporting endpoint, and the site's answers (see reporting.py)
Bad input answers 400 {"error": "..."}; identifiers that belong to two different people answer 409.

Fixture shape: {"segments": [{"id": 1, "name": "VIP", "type": "manual", "description": ""}],
                "customers": [{"email": "a@example.com", "id": "a1", "cio_id": "...", "attributes": {...},
                               "segments": [1], "unsubscribed": false, "timestamps": {...}}]}
Every customer needs an email or an id; cio_id is generated when missing.
"""

from .control import EmulatorControl
from .faults import FaultPlan
from .fixtures import read_fixture
from .records import EmulatorInputError, IdentityConflict, PersonRef, attribute_string
from .server import EmulatorServer
from .state import EmulatorState

__all__ = [
    "EmulatorControl",
    "EmulatorInputError",
    "EmulatorServer",
    "EmulatorState",
    "FaultPlan",
    "IdentityConflict",
    "PersonRef",
    "attribute_string",
    "read_fixture",
]
