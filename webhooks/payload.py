"""What a webhook's body and query carry beside the action and the contact: its options (role=, send_notification=)
and, sometimes, the person's attributes. Read when the webhook arrives and again when a worker processes the stored
delivery, so they sit below both the view and the queue."""

from dataclasses import dataclass

from settings_app.redaction import MASK
from users.services.contacts import Contact

FALSE_WORDS = {"", "false", "0", "no", "off"}


def is_true(value) -> bool:
    """send_notification and friends: anything but false/0/no/empty counts as yes (as in WP Fusion)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in FALSE_WORDS


def query_or_body(query: dict, body: dict, name: str):
    """A parameter from the query string, else from the body (JSON or form), as WP Fusion reads its request."""
    value = query.get(name)
    return value if value not in (None, "") else body.get(name)


@dataclass
class WebhookOptions:
    role: str = ""
    send_notification: bool = False

    @classmethod
    def from_request(cls, body: dict, query: dict) -> "WebhookOptions":
        role = query_or_body(query, body, "role")
        return cls(
            role=str(role).strip() if isinstance(role, str | int) and not isinstance(role, bool) else "",
            send_notification=is_true(query_or_body(query, body, "send_notification")),
        )


def person_from_body(body: dict | None, contact: Contact) -> dict | None:
    """The person's attributes when the webhook body carries them (`"attributes": {"first_name":
    "{{customer.first_name}}", ...}`), in the shape the App API returns, so the attributes call can be skipped.
    A stored body has password-like values masked, and secrets inside other strings (a login link's token, say):
    such a body is not used (the real values must be fetched)."""
    attributes = (body or {}).get("attributes")
    if not isinstance(attributes, dict) or not attributes:
        return None
    if any(isinstance(value, str) and MASK in value for value in attributes.values()):
        return None
    as_strings = {str(key): "" if value is None else str(value) for key, value in attributes.items()}
    identifiers = {contact.kind: contact.value}
    if contact.known_cio_id:
        identifiers["cio_id"] = contact.known_cio_id
    return {"identifiers": identifiers, "attributes": as_strings}
