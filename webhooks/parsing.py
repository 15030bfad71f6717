"""Reading a webhook request: the action, the contact and the options, from the body and the query string."""

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

from django.core.exceptions import ValidationError

from settings_app.redaction import MASK
from users.emails import validate_email_address
from users.services.contacts import Contact

FALSE_WORDS = {"", "false", "0", "no", "off"}


class WebhookInputError(Exception):
    """Bad input: answered with a 4xx JSON error."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def parse_body(raw: bytes) -> dict:
    """JSON whatever the Content-Type says (Customer.io users can change it), else a form body."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookInputError(400, "invalid_payload", "The body is neither JSON nor a form (not UTF-8).") from None
    stripped = text.strip()
    if stripped[:1] in '{["' or stripped in ("null", "true", "false"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            raise WebhookInputError(400, "invalid_payload", "The body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise WebhookInputError(400, "invalid_payload", "The JSON body must be an object.")
        return parsed
    try:
        return dict(parse_qsl(stripped, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        raise WebhookInputError(400, "invalid_payload", "The body is neither JSON nor a form.") from None


def find_contact(body: dict, query: dict) -> Contact:
    """The person the webhook is about: `email` (Customer.io body {"email": "{{customer.email}}"}), or `cio_id` /
    `id` in workspaces that identify people that way; the body first, then the query string."""
    sources = [body, body.get("customer") if isinstance(body.get("customer"), dict) else {}, query]
    for kind in ("email", "cio_id", "id"):
        for source in sources:
            value = source.get(kind)
            if value is None or value == "":
                continue
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise WebhookInputError(400, "invalid_contact", f"'{kind}' must be a string.")
            value = str(value).strip()
            if not value:
                continue
            if kind == "email":
                try:
                    validate_email_address(value)
                except ValidationError:
                    raise WebhookInputError(400, "invalid_contact", "'email' is not a valid email address.") from None
            if len(value) > 254:
                raise WebhookInputError(400, "invalid_contact", f"'{kind}' is too long.")
            return Contact(kind, value)
    raise WebhookInputError(400, "no_contact", 'No contact in the request: send {"email": "{{customer.email}}"}.')


def is_true(value) -> bool:
    """send_notification and friends: anything but false/0/no/empty counts as yes (as in WP Fusion)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in FALSE_WORDS


@dataclass
class WebhookOptions:
    role: str = ""
    send_notification: bool = False

    @classmethod
    def from_request(cls, body: dict, query: dict) -> "WebhookOptions":
        def pick(name):
            return query.get(name) if query.get(name) not in (None, "") else body.get(name)

        role = pick("role")
        return cls(
            role=str(role).strip() if isinstance(role, str | int) and not isinstance(role, bool) else "",
            send_notification=is_true(pick("send_notification")),
        )


def person_from_body(body: dict | None, contact: Contact) -> dict | None:
    """The person's attributes when the webhook body carries them (`"attributes": {"first_name":
    "{{customer.first_name}}", ...}`), in the shape the App API returns, so the attributes call can be skipped.
    A stored body has password-like values masked: such a body is not used (the real value must be fetched)."""
    attributes = (body or {}).get("attributes")
    if not isinstance(attributes, dict) or not attributes:
        return None
    if any(value == MASK for value in attributes.values()):
        return None
    as_strings = {str(key): "" if value is None else str(value) for key, value in attributes.items()}
    return {"identifiers": {contact.kind: contact.value}, "attributes": as_strings}
