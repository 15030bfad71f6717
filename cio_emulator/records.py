"""The emulator's records of people, segments and events, and the value rules Customer.io applies to them."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The identifiers a request may name a person by; the emulator has no phone identifiers (a workspace setting this
# project does not use).
ID_TYPES = ("id", "email", "cio_id")
# Keys of an identify body that are not attributes of the person: identifiers and Customer.io's request options.
_NOT_ATTRIBUTES = frozenset({"email", "id", "cio_id", "_update", "_timestamp", "cio_relationships"})


class EmulatorInputError(ValueError):
    """Input to a control endpoint or a Python helper that the emulator cannot use (answered 400)."""


class IdentityConflict(ValueError):
    """The identifiers given belong to two different people (answered 409)."""


# --------------------------------------------------------------------------------------------------------------------
# Values


def attribute_string(value: Any) -> str:
    """An attribute value as the App API returns it: Customer.io hands every attribute back as a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON 3.0 and 3 are the same number to Customer.io
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def removes_attribute(value: Any) -> bool:
    return value is None or value == ""


def _is_unsubscribed(value: Any) -> bool:
    # Customer.io's documented rule: true in any letter case, 1 or "1" unsubscribe; anything else is subscribed.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return False


def identifier_text(value: Any) -> str | None:
    """An identifier as Customer.io keeps it (a string), or None when the value cannot identify anybody."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def same_identifier(kind: str, left: str, right: str) -> bool:
    return left.lower() == right.lower() if kind == "email" else left == right


def json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def encode_cursor(after_seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{after_seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise EmulatorInputError(f"invalid start cursor {cursor!r}") from None
    label, _, number = text.partition(":")
    if label != "after" or not number.isdigit():
        raise EmulatorInputError(f"invalid start cursor {cursor!r}")
    return int(number)


def require_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EmulatorInputError(f"{where} must be an integer")
    return value


def non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise EmulatorInputError(f"{name} must be a number >= 0")
    return float(value)


# --------------------------------------------------------------------------------------------------------------------
# Records


@dataclass(eq=False, slots=True)
class Segment:
    id: int
    name: str
    type: str
    description: str
    created: int
    # Sequence numbers of the members, ascending: membership pages follow this order, so cursors stay valid while
    # people join and leave.
    members: list[int] = field(default_factory=list)

    def app_json(self) -> dict:
        return {
            "id": self.id,
            "deduplicate_id": f"{self.id}:{self.created}",
            "name": self.name,
            "description": self.description,
            "state": "finished",
            "progress": None,
            "type": self.type,
            "tags": None,
        }


@dataclass(eq=False, slots=True)
class Customer:
    seq: int
    cio_id: str
    created: int
    id: str | None = None
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    timestamps: dict[str, int] = field(default_factory=dict)
    segment_ids: set[int] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)  # oldest first
    event_ids: set[str] = field(default_factory=set)  # the ULIDs seen, upper-cased (ULIDs ignore letter case)

    @property
    def unsubscribed(self) -> bool:
        return _is_unsubscribed(self.attributes.get("unsubscribed"))

    def identifier(self, kind: str) -> str | None:
        return getattr(self, kind)

    def identifiers_json(self) -> dict:
        return {"email": self.email, "id": self.id, "cio_id": self.cio_id}

    def app_json(self) -> dict:
        """The `customer` object of the App API's attribute lookups."""
        attributes = {name: attribute_string(value) for name, value in self.attributes.items()}
        attributes["cio_id"] = self.cio_id
        attributes["_created_in_customerio_at"] = str(self.created)
        if self.email is not None:
            attributes["email"] = self.email
        if self.id is not None:
            attributes["id"] = self.id
        return {
            "id": self.id,
            "identifiers": self.identifiers_json(),
            "attributes": attributes,
            "timestamps": dict(self.timestamps),
            "unsubscribed": self.unsubscribed,
            "devices": [],
        }

    def stored_json(self) -> dict:
        """What the emulator holds, raw attribute values included: for tests that check what a client sent."""
        return {
            "cio_id": self.cio_id,
            "id": self.id,
            "email": self.email,
            "attributes": dict(self.attributes),
            "segments": sorted(self.segment_ids),
            "timestamps": dict(self.timestamps),
            "unsubscribed": self.unsubscribed,
        }


@dataclass(frozen=True, slots=True)
class PersonRef:
    """How a request names a person: one identifier and its kind ("email", "id" or "cio_id")."""

    kind: str
    value: str

    @classmethod
    def from_path(cls, identifier: str) -> PersonRef:
        # Customer.io tells the kinds apart by shape: cio_ prefix, then an "@", else an id.
        if identifier.startswith("cio_"):
            return cls("cio_id", identifier.removeprefix("cio_"))
        if "@" in identifier:
            return cls("email", identifier)
        return cls("id", identifier)


@dataclass(frozen=True, slots=True)
class IdentifyRequest:
    ref: PersonRef
    body_identifiers: dict[str, str]  # "email"/"id" given among the attributes
    attributes: dict[str, Any]
    update_only: bool

    @classmethod
    def build(cls, ref: PersonRef, body: Mapping[str, Any]) -> IdentifyRequest:
        body_identifiers = {}
        for kind in ("email", "id"):
            value = identifier_text(body.get(kind))
            if value is not None:
                body_identifiers[kind] = value
        attributes = {name: value for name, value in body.items() if name not in _NOT_ATTRIBUTES}
        return cls(ref, body_identifiers, attributes, update_only=body.get("_update") is True)

    def named_identifiers(self) -> tuple[str, ...]:
        return (self.ref.value, *self.body_identifiers.values())


@dataclass(frozen=True, slots=True)
class EventRequest:
    """A person event from a v2 batch entry, already validated."""

    ref: PersonRef
    name: str
    event_id: str | None  # the ULID Customer.io deduplicates by
    timestamp: int | None  # when it happened, as sent; Customer.io uses the time received when there is none
    attributes: dict[str, Any]

    def named_identifiers(self) -> tuple[str, ...]:
        return (self.ref.value,)


@dataclass(frozen=True, slots=True)
class Event:
    """An event recorded for a person."""

    name: str
    event_id: str | None
    timestamp: int | None
    attributes: dict[str, Any]
    received_at: float  # Unix time, as the request log's `time`

    def json(self) -> dict:
        return {
            "name": self.name,
            "id": self.event_id,
            "timestamp": self.timestamp,
            "attributes": dict(self.attributes),
            "received_at": self.received_at,
        }


# Outcomes of an identify or an event, for Python-level callers; over HTTP every one of them is answered as accepted.
CREATED, UPDATED, SKIPPED, FAILED = "created", "updated", "skipped", "failed"
RECORDED, DUPLICATE = "recorded", "duplicate"
