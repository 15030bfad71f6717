"""One Customer.io reporting event read into the values of its MessageEvent row.

What Customer.io sends (one event per request; https://docs.customer.io/api/webhooks, "Reporting webhooks"):

    {"event_id": "01E4C4HDQ7P5RR3SKEA6MWJQJ8", "object_type": "email", "metric": "clicked", "timestamp": 1613063089,
     "data": {"identifiers": {"id": "ann", "email": "ann@example.com", "cio_id": "a1b2c3"}, "customer_id": "ann",
              "recipient": "ann@example.com", "delivery_id": "RAECAAFwnUSneIa0ZXkmq8EdkAM==", "campaign_id": 12,
              "action_id": 36, "journey_id": "01GW...", "href": "https://example.com/offer", "link_id": 2,
              "subject": "...", "failure_message": "..."}}

`data` names what sent the message (campaign_id, i.e. a journey; broadcast_id; newsletter_id;
transactional_message_id), the journey's action_id, the person's identifiers, the address the message went to
(recipient; a subscription event has email_address instead), the link of a click (href) and why a message did not
arrive (failure_message). With "Body Content" on, a sent event also carries the message (content, headers): never
kept, nor its subject — the site records what happened, not what was said.

Only event_id and metric are required. Customer.io adds channels and metrics over time, and a field of an unexpected
type is left out rather than refused: a refusal would make Customer.io retry the event for days and hold back the
ones behind it.
"""

from datetime import UTC, datetime

from django.utils import timezone

from settings_app.redaction import scrub

from ..models import MessageEvent

# Seconds since the epoch Customer.io's timestamps may take: a value outside (milliseconds by mistake, a negative
# number) is not a time, and the event is stored with the time it arrived instead.
LATEST_TIMESTAMP = 32_503_680_000  # the year 3000
SOURCE_IDS = ("campaign_id", "broadcast_id", "newsletter_id", "transactional_message_id", "action_id")
LARGEST_ID = 2**63 - 1  # a bigint column


class InvalidEvent(ValueError):
    """The event cannot be stored: the text says which field is wrong (never a value from the body)."""


def event_values(document) -> dict:
    """The MessageEvent fields of a parsed body (a dict). Raises InvalidEvent without an event_id or a metric."""
    if not isinstance(document, dict):
        raise InvalidEvent("The body must be one JSON object, a Customer.io reporting event.")
    event_id = _required_text(document, "event_id")
    metric = _required_text(document, "metric")
    data = document.get("data")
    data = data if isinstance(data, dict) else {}
    identifiers = data.get("identifiers")
    identifiers = identifiers if isinstance(identifiers, dict) else {}
    channel = _text(document.get("object_type"), "channel")
    recipient = _text(data.get("recipient"), "recipient") or _text(data.get("email_address"), "recipient")
    email = _text(identifiers.get("email"), "email") or _text(data.get("email_address"), "email")
    if not email and channel == "email" and "@" in recipient:
        email = recipient
    values = {
        "event_id": event_id,
        "metric": metric,
        "channel": channel,
        "occurred_at": _time(document.get("timestamp")),
        "delivery_id": _text(data.get("delivery_id"), "delivery_id"),
        "journey_id": _text(data.get("journey_id"), "journey_id"),
        "recipient": recipient,
        "email": email,
        "cio_id": _text(identifiers.get("cio_id"), "cio_id"),
        "customer_id": _text(identifiers.get("id"), "customer_id") or _text(data.get("customer_id"), "customer_id"),
        # The site's own emails link to login and set-password links: their tokens must never be kept or shown.
        "link": scrub(_text(data.get("href"), "link")),
        "failure": _text(data.get("failure_message"), "failure"),
    }
    values.update({name: _number(data.get(name)) for name in SOURCE_IDS})
    return values


def _required_text(document: dict, name: str) -> str:
    value = document.get(name)
    limit = MessageEvent._meta.get_field(name).max_length
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"'{name}' is missing: a Customer.io reporting event has a non-empty '{name}' string.")
    if len(value.strip()) > limit:
        raise InvalidEvent(f"'{name}' is longer than {limit} characters.")
    return value.strip()


def _text(value, field: str) -> str:
    """A string (or a number, as ids may come) cut to its column's length; anything else is left out."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()[: MessageEvent._meta.get_field(field).max_length]


def _number(value) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LARGEST_ID:
        return None
    return value


def _time(value) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < LATEST_TIMESTAMP:
        return timezone.now()
    return datetime.fromtimestamp(value, tz=UTC)
