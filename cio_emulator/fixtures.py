"""Fixtures: the JSON shape of segments and people to load into the emulator, parsed and checked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import EmulatorInputError, identifier_text, removes_attribute, require_int


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    id: int
    name: str | None
    type: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    cio_id: str | None
    id: str | None
    email: str | None
    attributes: dict[str, Any] | None
    segment_ids: tuple[int, ...] | None
    timestamps: dict[str, int] | None

    def identifiers(self) -> list[tuple[str, str]]:
        pairs = (("cio_id", self.cio_id), ("id", self.id), ("email", self.email))
        return [(kind, value) for kind, value in pairs if value is not None]


@dataclass(frozen=True, slots=True)
class Fixture:
    segments: tuple[SegmentSpec, ...] = ()
    customers: tuple[CustomerSpec, ...] = ()


def _optional_str(entry: Mapping, key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise EmulatorInputError(f"{where}.{key} must be a string")
    return value


def parse_segment(entry: Any, where: str) -> SegmentSpec:
    if not isinstance(entry, Mapping):
        raise EmulatorInputError(f"{where} must be an object")
    return SegmentSpec(
        id=require_int(entry.get("id"), f"{where}.id"),
        name=_optional_str(entry, "name", where),
        type=_optional_str(entry, "type", where),
        description=_optional_str(entry, "description", where),
    )


def parse_customer(entry: Any, where: str) -> CustomerSpec:
    if not isinstance(entry, Mapping):
        raise EmulatorInputError(f"{where} must be an object")
    identifiers = {}
    for kind in ("cio_id", "id", "email"):
        raw = entry.get(kind)
        identifiers[kind] = identifier_text(raw)
        if raw is not None and identifiers[kind] is None:
            raise EmulatorInputError(f"{where}.{kind} must be a non-empty string")
    if identifiers["id"] is None and identifiers["email"] is None:
        raise EmulatorInputError(f"{where} needs an email or an id")

    attributes = entry.get("attributes")
    if attributes is not None:
        if not isinstance(attributes, Mapping):
            raise EmulatorInputError(f"{where}.attributes must be an object")
        attributes = {name: value for name, value in attributes.items() if not removes_attribute(value)}
    if "unsubscribed" in entry:
        attributes = {**(attributes or {}), "unsubscribed": bool(entry["unsubscribed"])}

    segments = entry.get("segments")
    if segments is not None:
        if not isinstance(segments, list):
            raise EmulatorInputError(f"{where}.segments must be a list of segment ids")
        segments = tuple(require_int(s, f"{where}.segments[]") for s in segments)

    timestamps = entry.get("timestamps")
    if timestamps is not None and not (
        isinstance(timestamps, Mapping) and all(isinstance(v, int) for v in timestamps.values())
    ):
        raise EmulatorInputError(f"{where}.timestamps must map names to integers")

    return CustomerSpec(
        cio_id=identifiers["cio_id"],
        id=identifiers["id"],
        email=identifiers["email"],
        attributes=attributes,
        segment_ids=segments,
        timestamps=dict(timestamps) if timestamps is not None else None,
    )


def parse_fixture(fixture: Any) -> Fixture:
    if not isinstance(fixture, Mapping):
        raise EmulatorInputError("a fixture must be an object with 'segments' and 'customers' lists")
    unknown = set(fixture) - {"segments", "customers"}
    if unknown:
        raise EmulatorInputError(f"unknown fixture keys: {sorted(unknown)}")
    segments, customers = fixture.get("segments") or [], fixture.get("customers") or []
    if not isinstance(segments, list) or not isinstance(customers, list):
        raise EmulatorInputError("fixture 'segments' and 'customers' must be lists")
    return Fixture(
        segments=tuple(parse_segment(entry, f"segments[{i}]") for i, entry in enumerate(segments)),
        customers=tuple(parse_customer(entry, f"customers[{i}]") for i, entry in enumerate(customers)),
    )


def read_fixture(fixture: Mapping | str | Path) -> Mapping:
    """A fixture given as a mapping or as the path of a JSON file."""
    if isinstance(fixture, Mapping):
        return fixture
    if isinstance(fixture, str | Path):
        with open(fixture, encoding="utf-8") as handle:
            return json.load(handle)
    raise TypeError(f"fixture must be a mapping, a path or None, not {type(fixture).__name__}")
