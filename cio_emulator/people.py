"""The people and segments the emulator holds, and every change Customer.io would make to them.

People are indexed by email (case-insensitively, as Customer.io matches emails), id and cio_id; a segment keeps
its members in the order they were created, which the membership pages follow. Not thread-safe on its own:
EmulatorState calls it with its lock held.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from .fixtures import CustomerSpec, Fixture, SegmentSpec
from .records import (
    CREATED,
    DUPLICATE,
    FAILED,
    RECORDED,
    SKIPPED,
    UPDATED,
    Customer,
    EmulatorInputError,
    Event,
    EventRequest,
    IdentifyRequest,
    IdentityConflict,
    PersonRef,
    Segment,
    decode_cursor,
    encode_cursor,
    removes_attribute,
    same_identifier,
)


class People:
    def __init__(self) -> None:
        self._segments: dict[int, Segment] = {}
        self._customers: dict[int, Customer] = {}  # by sequence number
        self._by_email: dict[str, Customer] = {}  # lower-cased: Customer.io matches emails case-insensitively
        self._by_id: dict[str, Customer] = {}
        self._by_cio_id: dict[str, Customer] = {}
        self._next_seq = 1
        self._events: list[tuple[Customer, Event]] = []  # everybody's, oldest first

    def counts(self) -> dict:
        return {"segments": len(self._segments), "customers": len(self._customers)}

    # ---- fixtures and control-side upserts

    def check_segment_references(self, fixture: Fixture) -> None:
        """Refuse a fixture naming segments that neither it nor these people have, before any of it is applied."""
        known = set(self._segments)
        for spec in fixture.segments:
            if spec.id not in known and spec.name is None:
                raise EmulatorInputError(f"segment {spec.id} is new and needs a name")
            known.add(spec.id)
        for spec in fixture.customers:
            missing = set(spec.segment_ids or ()) - known
            if missing:
                raise EmulatorInputError(f"customer {spec.email or spec.id} names unknown segments {sorted(missing)}")

    def apply_fixture(self, fixture: Fixture, now: int) -> None:
        for segment_spec in fixture.segments:
            self.upsert_segment(segment_spec, now)
        for customer_spec in fixture.customers:
            self.upsert_customer(customer_spec, now)

    def upsert_segment(self, spec: SegmentSpec, now: int) -> Segment:
        segment = self._segments.get(spec.id)
        if segment is None:
            segment = Segment(id=spec.id, name=spec.name or "", type="manual", description="", created=now)
            self._segments[spec.id] = segment
        if spec.name is not None:
            segment.name = spec.name
        if spec.type is not None:
            segment.type = spec.type
        if spec.description is not None:
            segment.description = spec.description
        return segment

    def upsert_customer(self, spec: CustomerSpec, now: int) -> Customer:
        owners = {self.find(PersonRef(kind, value)) for kind, value in spec.identifiers()} - {None}
        if len(owners) > 1:
            raise IdentityConflict(f"the identifiers of {spec.email or spec.id} belong to different people")
        person = owners.pop() if owners else None
        if person is not None and spec.cio_id is not None and person.cio_id != spec.cio_id:
            raise IdentityConflict(f"{spec.email or spec.id} already exists with cio_id {person.cio_id}")
        if person is None:
            person = self._new_customer(now, spec.cio_id)
        for kind in ("email", "id"):
            value = getattr(spec, kind)
            if value is not None:
                self._set_identifier(person, kind, value, now)
        if spec.attributes is not None:
            person.attributes = dict(spec.attributes)
            person.timestamps.update(dict.fromkeys(spec.attributes, now))
        if spec.segment_ids is not None:
            self._set_segments(person, set(spec.segment_ids))
        if spec.timestamps is not None:
            person.timestamps.update(spec.timestamps)
        return person

    # ---- people and their indexes

    def find(self, ref: PersonRef) -> Customer | None:
        if ref.kind == "email":
            return self._by_email.get(ref.value.lower())
        if ref.kind == "id":
            return self._by_id.get(ref.value)
        return self._by_cio_id.get(ref.value)

    def _new_customer(self, now: int, cio_id: str | None = None) -> Customer:
        while cio_id is None or cio_id in self._by_cio_id:
            cio_id = secrets.token_hex(10)
        person = Customer(seq=self._next_seq, cio_id=cio_id, created=now)
        person.timestamps.update({"cio_id": now, "_created_in_customerio_at": now})
        self._next_seq += 1
        self._customers[person.seq] = person
        self._by_cio_id[cio_id] = person
        return person

    def _set_identifier(self, person: Customer, kind: str, value: str, now: int) -> None:
        current = person.identifier(kind)
        if current is not None and same_identifier(kind, current, value):
            return
        index, key = (self._by_email, str.lower) if kind == "email" else (self._by_id, str)
        if current is not None:
            index.pop(key(current), None)
        index[key(value)] = person
        setattr(person, kind, value)
        person.timestamps[kind] = now

    def _set_segments(self, person: Customer, segment_ids: set[int]) -> None:
        for segment_id in person.segment_ids - segment_ids:
            members = self._segments[segment_id].members
            del members[bisect.bisect_left(members, person.seq)]
        for segment_id in segment_ids - person.segment_ids:
            bisect.insort(self._segments[segment_id].members, person.seq)
        person.segment_ids = segment_ids

    def _merge_attributes(self, person: Customer, attributes: Mapping[str, Any], now: int) -> None:
        for name, value in attributes.items():
            if removes_attribute(value):
                person.attributes.pop(name, None)
                person.timestamps.pop(name, None)
            else:
                person.attributes[name] = value
                person.timestamps[name] = now

    # ---- Track API

    def identify(self, request: IdentifyRequest, now: int) -> str:
        ref, body_identifiers = request.ref, request.body_identifiers
        if ref.kind in body_identifiers and not same_identifier(ref.kind, body_identifiers[ref.kind], ref.value):
            return FAILED  # the path and the body name different values of the same identifier
        person = self.find(ref)
        assign: dict[str, str] = {}
        if person is None:
            if ref.kind == "cio_id":
                return SKIPPED  # Customer.io drops requests for a cio_id it does not know
            owners = {self.find(PersonRef(k, v)) for k, v in body_identifiers.items()} - {None}
            if len(owners) > 1:
                return FAILED
            person = owners.pop() if owners else None
            if person is None and request.update_only:
                return SKIPPED
            # The person this request is about takes the path's identifier, even replacing one they had.
            assign[ref.kind] = ref.value
        for kind, value in body_identifiers.items():
            owner = self.find(PersonRef(kind, value))
            if owner is not None and owner is not person:
                return FAILED
            current = person.identifier(kind) if person else None
            # Only a reference by cio_id may change an identifier a person already has.
            if current is not None and not same_identifier(kind, current, value) and ref.kind != "cio_id":
                return FAILED
            assign.setdefault(kind, value)

        outcome = UPDATED if person else CREATED
        person = person or self._new_customer(now)
        for kind, value in assign.items():
            self._set_identifier(person, kind, value, now)
        self._merge_attributes(person, request.attributes, now)
        return outcome

    def track_event(self, request: EventRequest, received_at: float) -> str:
        person = self.find(request.ref)
        if person is None:
            if request.ref.kind == "cio_id":
                return SKIPPED  # Customer.io drops requests for a cio_id it does not know
            # Customer.io's Track API description does not say what an event for an email or id nobody has does (nor
            # did the documentation pages searched). The emulator's choice, which is our understanding of Customer.io:
            # the person is created, as an identify without _update and add_customers create them.
            now = int(received_at)
            person = self._new_customer(now)
            self._set_identifier(person, request.ref.kind, request.ref.value, now)
        dedupe_key = request.event_id.upper() if request.event_id else None
        if dedupe_key is not None:
            if dedupe_key in person.event_ids:
                return DUPLICATE  # answered as accepted; Customer.io ignores an event id it has already received
            person.event_ids.add(dedupe_key)
        event = Event(request.name, request.event_id, request.timestamp, dict(request.attributes), received_at)
        person.events.append(event)
        self._events.append((person, event))
        return RECORDED

    def events(self, ref: PersonRef, name: str | None = None) -> list[dict] | None:
        person = self.find(ref)
        if person is None:
            return None
        return [event.json() for event in person.events if name is None or event.name == name]

    def all_events(self, name: str | None = None) -> list[dict]:
        return [
            {**event.json(), "person": person.identifiers_json()}
            for person, event in self._events
            if name is None or event.name == name
        ]

    def change_segment_members(self, segment_id: int, refs: Iterable[PersonRef], add: bool, now: int) -> str | None:
        """Track API add_customers / remove_customers. None when done, else "not_found" or "data_driven". As in
        Customer.io, adding an email or id nobody has creates that person; an unknown cio_id is ignored."""
        segment = self._segments.get(segment_id)
        if segment is None:
            return "not_found"
        if segment.type != "manual":
            return "data_driven"
        for ref in refs:
            person = self.find(ref)
            if person is None:
                if not add or ref.kind == "cio_id":
                    continue
                person = self._new_customer(now)
                self._set_identifier(person, ref.kind, ref.value, now)
            wanted = set(person.segment_ids)
            if add:
                wanted.add(segment_id)
            else:
                wanted.discard(segment_id)
            self._set_segments(person, wanted)
        return None

    # ---- App API

    def app_segments(self) -> list[dict]:
        return [segment.app_json() for segment in sorted(self._segments.values(), key=lambda s: s.id)]

    def app_segment(self, segment_id: int) -> dict | None:
        segment = self._segments.get(segment_id)
        return segment.app_json() if segment else None

    def app_segment_count(self, segment_id: int) -> int | None:
        segment = self._segments.get(segment_id)
        return len(segment.members) if segment else None

    def app_customer(self, ref: PersonRef) -> dict | None:
        person = self.find(ref)
        return person.app_json() if person else None

    def app_customers(self, refs: Iterable[PersonRef]) -> list[dict]:
        """The people that exist among `refs`, each once, in the order asked."""
        found = {}
        for ref in refs:
            person = self.find(ref)
            if person is not None and person.seq not in found:
                found[person.seq] = person.app_json()
        return list(found.values())

    def app_customer_segments(self, ref: PersonRef) -> list[dict] | None:
        person = self.find(ref)
        if person is None:
            return None
        return [self._segments[segment_id].app_json() for segment_id in sorted(person.segment_ids)]

    def app_membership(self, segment_id: int, limit: int, start: str | None) -> dict | None:
        """One page of a segment's members in a stable order; `next` is "" on the last page."""
        after_seq = decode_cursor(start) if start else 0
        segment = self._segments.get(segment_id)
        if segment is None:
            return None
        begin = bisect.bisect_right(segment.members, after_seq)
        page = [self._customers[seq] for seq in segment.members[begin : begin + limit]]
        more = begin + limit < len(segment.members)
        return {
            "identifiers": [person.identifiers_json() for person in page],
            # Customer.io documents an empty string in `ids` for a member without an id.
            "ids": [person.id or "" for person in page],
            "next": encode_cursor(page[-1].seq) if more else "",
        }
