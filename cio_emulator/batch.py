"""Track API v2 batch entries: the person identify or event an entry asks for, or why Customer.io would refuse it.

A refused entry is reported by its batch_index in a 207 while the others apply, so each check raises
InvalidOperation with the error object Customer.io's 207 answer lists (`reason`, `field`, `message`).
"""

from __future__ import annotations

import re
from typing import Any

from .records import ID_TYPES, EventRequest, IdentifyRequest, PersonRef, identifier_text, json_bytes

# Customer.io: "Each of the requests within the batch must also be 32kb or smaller."
MAX_BATCH_OPERATION_BYTES = 32 * 1024
# Crockford base32, 26 characters; the first stays within 0-7 because a ULID is 128 bits.
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)


def batch_error(reason: str, field_name: str, message: str) -> dict:
    return {"reason": reason, "field": field_name, "message": message}


class InvalidOperation(ValueError):
    def __init__(self, reason: str, field_name: str, message: str):
        super().__init__(message)
        self.error = batch_error(reason, field_name, message)


def _invalid(field_name: str, message: str) -> InvalidOperation:
    return InvalidOperation("invalid", field_name, message)


def parse_operation(operation: Any) -> IdentifyRequest | EventRequest:
    """The request a v2 batch entry describes, or InvalidOperation saying what is wrong with it."""
    if not isinstance(operation, dict):
        raise _invalid("batch", "each batch entry must be an object")
    if len(json_bytes(operation)) > MAX_BATCH_OPERATION_BYTES:
        message = f"a batch entry must be {MAX_BATCH_OPERATION_BYTES} bytes or less"
        raise InvalidOperation("too_large", "batch", message)
    if operation.get("type") != "person":
        raise _invalid("type", "type must be 'person' (the emulator handles only people)")
    action = operation.get("action")
    if action not in ("identify", "event"):
        raise _invalid("action", "action must be 'identify' or 'event' (the person actions the emulator handles)")
    ref = _person_ref(operation.get("identifiers"))
    attributes = operation.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _invalid("attributes", "attributes must be an object")
    if action == "identify":
        return IdentifyRequest.build(ref, attributes)
    return _event_request(ref, operation, attributes)


def _person_ref(identifiers: Any) -> PersonRef:
    # person_common: exactly one identifier.
    if not isinstance(identifiers, dict) or len(identifiers) != 1:
        raise _invalid("identifiers", "identifiers must hold exactly one of id, email or cio_id")
    ((kind, raw_value),) = identifiers.items()
    value = identifier_text(raw_value)
    if kind not in ID_TYPES or value is None:
        raise _invalid("identifiers", f"identifiers.{kind} is not a usable id, email or cio_id")
    return PersonRef(kind, value)


def _event_request(ref: PersonRef, operation: dict, attributes: dict) -> EventRequest:
    """person_event: `name` required; `id` a ULID, `timestamp` an integer, each when present."""
    name = operation.get("name")
    if not isinstance(name, str):
        raise _invalid("name", "name is required and must be a string")
    # Customer.io trims the spaces around event names; a name of spaces alone names nothing.
    name = name.strip()
    if not name:
        raise _invalid("name", "name must not be empty")
    event_id = operation.get("id")
    if event_id is not None and not (isinstance(event_id, str) and _ULID.fullmatch(event_id)):
        raise _invalid("id", "id must be a ULID (26 characters of Crockford base32)")
    timestamp = operation.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)):
        raise _invalid("timestamp", "timestamp must be an integer (Unix seconds)")
    return EventRequest(ref, name, event_id, timestamp, attributes)
