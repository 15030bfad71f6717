"""The webhook's and the queue's counters. Counting costs a label lookup and a write to this process's memory-mapped
file (multiprocess mode) or to memory: a few microseconds, never a database or cache round trip.

Label values come from small fixed sets, whatever a caller sends: a stranger's `wpf_action=<anything>` is counted
as `unknown`, never as a new series."""

from collections import Counter as Tally
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from prometheus_client import Counter, Histogram

from ..actions import ACTIONS

REQUESTS = Counter(
    "webhook_requests",
    "Answers of the journey webhook, by action, and of the reporting webhook (action `reporting`), by HTTP status "
    "(refused requests included).",
    ["action", "status"],
)
# Customer.io gives up on a webhook after 4 s: the 4.0 bucket separates answers it saw from those it did not.
DURATION = Histogram(
    "webhook_request_duration_seconds",
    "Time to answer the journey webhook, by action, and the reporting webhook (action `reporting`).",
    ["action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0),
)
REFUSED = Counter(
    "webhook_refused_requests",
    "Journey and reporting webhook requests answered with a client error instead of being processed, by reason.",
    ["reason"],
)
PROCESSED = Counter(
    "webhook_deliveries_processed",
    "Delivery outcomes written (synchronous and queued), by the delivery's action and outcome "
    "(succeeded, skipped, failed, retrying).",
    ["action", "outcome"],
)

NO_ACTION = "none"
UNKNOWN = "unknown"
# The reporting webhook's answers are counted under this action (it has no wpf_action).
REPORTING = "reporting"

# The error code of a refused request (webhooks.intake.exceptions) -> its reason label. Codes not listed (a bad
# body, no contact, a repeated parameter, an unknown action, ...) are `invalid_request`.
REASONS = {
    "invalid_access_key": "invalid_key",  # `missing_key` when no key came at all
    "too_many_refused_requests": "throttled",
    "payload_too_large": "too_large",
    "length_required": "too_large",  # a chunked body a server cannot measure: refused for its size
    "method_not_allowed": "method_not_allowed",
    "invalid_signature": "invalid_signature",  # the reporting webhook's: unsigned, wrong key or too old
}
INVALID_REQUEST = "invalid_request"
MISSING_KEY = "missing_key"


def action_label(value: object) -> str:
    """A registry action's name; `none` when the request named none; `unknown` for anything else."""
    if not value:
        return NO_ACTION
    return value if isinstance(value, str) and value in ACTIONS else UNKNOWN


def refusal_reason(code: str, *, key_sent: bool) -> str:
    reason = REASONS.get(code, INVALID_REQUEST)
    return MISSING_KEY if reason == "invalid_key" and not key_sent else reason


def webhook_answered(action: str, status: int, seconds: float, refused_for: str | None = None) -> None:
    """One answer of the webhook (`action`: action_label's). `refused_for`: refusal_reason's, for a refusal."""
    _series(REQUESTS, action, str(status)).inc()
    _series(DURATION, action).observe(seconds)
    if refused_for is not None:
        _series(REFUSED, refused_for).inc()


# Each series once looked up, for the webhook's every answer: the client's labels() converts, validates and locks each
# time. A few dozen entries at most: every label value comes from a fixed set (and HTTP statuses).
_children: dict[tuple, object] = {}


def _series(metric, *labels: str):
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def deliveries_processed(actions: Iterable[str], outcome: str) -> None:
    """Deliveries whose outcome was just written, counted once the transaction writing it commits (at once outside
    one): a processing rolled back is not counted."""
    counts = Tally(action_label(action) for action in actions)
    if counts:
        transaction.on_commit(partial(_count_processed, counts, outcome))


def _count_processed(counts: Tally, outcome: str) -> None:
    for action, count in counts.items():
        PROCESSED.labels(action, outcome).inc(count)
