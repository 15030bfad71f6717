"""The endpoints: Customer.io's App API and Track API, and the emulator's own control endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from . import reporting
from .batch import InvalidOperation, batch_error, parse_operation
from .records import ID_TYPES, EmulatorInputError, IdentifyRequest, PersonRef, identifier_text
from .state import EmulatorState

MAX_LOOKUP_IDS = 100
MAX_SEGMENT_CHANGE_IDS = 1000
DEFAULT_MEMBERSHIP_LIMIT = 1000
MAX_MEMBERSHIP_LIMIT = 30000


@dataclass(frozen=True, slots=True)
class Body:
    value: Any = None  # the parsed JSON document; None when absent or unparseable
    empty: bool = True
    valid: bool = True
    too_large: bool = False

    @classmethod
    def parse(cls, data: bytes) -> Body:
        if not data.strip():
            return cls()
        try:
            return cls(value=json.loads(data), empty=False)
        except ValueError:  # also covers bytes that are not UTF-8
            return cls(empty=False, valid=False)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    payload: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """One routed request, as a route function sees it."""

    state: EmulatorState
    params: dict[str, str]  # percent-decoded path parameters
    query: dict[str, str]
    body: Body


def app_error(status: int, detail: str) -> Reply:
    return Reply(status, {"errors": [{"detail": detail, "status": str(status)}]})


def track_error(status: int, message: str) -> Reply:
    return Reply(status, {"meta": {"errors": [message]}})


def control_error(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


# ---- App API routes


def _id_type(call: Call) -> str:
    id_type = call.query.get("id_type") or "id"
    if id_type not in ID_TYPES:
        raise EmulatorInputError(f"id_type must be one of {', '.join(ID_TYPES)}")
    return id_type


def _segment_id(call: Call) -> int | None:
    raw = call.params["segment_id"]
    return int(raw) if raw.isdigit() else None


def _get_segments(call: Call) -> Reply:
    return Reply(200, {"segments": call.state.app_segments()})


def _get_segment(call: Call) -> Reply:
    segment_id = _segment_id(call)
    segment = call.state.app_segment(segment_id) if segment_id is not None else None
    return Reply(200, {"segment": segment}) if segment else app_error(404, "Segment not found")


def _get_customer_count(call: Call) -> Reply:
    segment_id = _segment_id(call)
    count = call.state.app_segment_count(segment_id) if segment_id is not None else None
    return (
        Reply(200, {"segment_id": segment_id, "count": count})
        if count is not None
        else app_error(404, "Segment not found")
    )


def _get_membership(call: Call) -> Reply:
    raw_limit = call.query.get("limit") or str(DEFAULT_MEMBERSHIP_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_MEMBERSHIP_LIMIT:
        return app_error(400, f"limit must be an integer from 1 to {MAX_MEMBERSHIP_LIMIT}")
    segment_id = _segment_id(call)
    start = call.query.get("start")
    page = call.state.app_membership(segment_id, int(raw_limit), start) if segment_id is not None else None
    return Reply(200, page) if page is not None else app_error(404, "Segment not found")


def _get_customer_attributes(call: Call) -> Reply:
    customer = call.state.app_customer(PersonRef(_id_type(call), call.params["identifier"]))
    return Reply(200, {"customer": customer}) if customer else app_error(404, "Customer not found")


def _get_customer_segments(call: Call) -> Reply:
    segments = call.state.app_customer_segments(PersonRef(_id_type(call), call.params["identifier"]))
    return Reply(200, {"segments": segments}) if segments is not None else app_error(404, "Customer not found")


def _post_customers_attributes(call: Call) -> Reply:
    id_type = _id_type(call)
    if not call.body.valid:
        return app_error(400, "the body is not valid JSON")
    document = call.body.value
    ids = document.get("ids") if isinstance(document, dict) else None
    if not isinstance(ids, list):
        return app_error(400, 'the body must be a JSON object {"ids": [...]}')
    if len(ids) > MAX_LOOKUP_IDS:
        return app_error(400, f"at most {MAX_LOOKUP_IDS} ids per request ({len(ids)} given)")
    values = [identifier_text(value) for value in ids]
    if None in values:
        return app_error(400, "every id must be a non-empty string or an integer")
    customers = call.state.app_customers(PersonRef(id_type, value) for value in values)
    return Reply(200, {"customers": [{"customer": customer} for customer in customers]})


# ---- Track API routes


def _put_customer(call: Call) -> Reply:
    if not call.body.valid:
        return track_error(400, "the body is not valid JSON")
    attributes = {} if call.body.empty else call.body.value
    if not isinstance(attributes, dict):
        return track_error(400, "the body must be a JSON object of attributes")
    call.state.apply_operations([IdentifyRequest.build(PersonRef.from_path(call.params["identifier"]), attributes)])
    return Reply(200, {})


def _change_segment_members(call: Call, add: bool) -> Reply:
    id_type = _id_type(call)
    if not call.body.valid:
        return track_error(400, "the body is not valid JSON")
    document = call.body.value
    ids = document.get("ids") if isinstance(document, dict) else None
    if not isinstance(ids, list):
        return track_error(400, 'the body must be a JSON object {"ids": [...]}')
    if len(ids) > MAX_SEGMENT_CHANGE_IDS:
        return track_error(400, f"at most {MAX_SEGMENT_CHANGE_IDS} ids per request ({len(ids)} given)")
    values = [identifier_text(value) for value in ids]
    if None in values:
        return track_error(400, "every id must be a non-empty string or an integer")
    segment_id = _segment_id(call)
    refs = [PersonRef(id_type, value) for value in values]
    problem = call.state.change_segment_members(segment_id, refs, add) if segment_id is not None else "not_found"
    if problem == "not_found":
        return track_error(404, "segment not found")
    if problem == "data_driven":
        return track_error(400, "people cannot be added to or removed from a data-driven segment")
    return Reply(200, {})


def _add_customers(call: Call) -> Reply:
    return _change_segment_members(call, add=True)


def _remove_customers(call: Call) -> Reply:
    return _change_segment_members(call, add=False)


def _post_batch(call: Call) -> Reply:
    document = call.body.value
    batch = document.get("batch") if isinstance(document, dict) else None
    if not isinstance(batch, list):
        message = 'the body must be a JSON object {"batch": [...]}'
        return Reply(400, {"errors": [batch_error("invalid", "batch", message)]})
    operations, errors = [], []
    for index, entry in enumerate(batch):
        try:
            operation = parse_operation(entry)
        except InvalidOperation as invalid:
            errors.append({"batch_index": index, **invalid.error})
            continue
        if call.state.fault_rejects(operation):
            message = "refused by the emulator's fault plan (reject_identifiers)"
            errors.append({"batch_index": index, **batch_error("invalid", "identifiers", message)})
            continue
        operations.append(operation)
    # Applied in the order sent, so an identify and then an event for the same new person work in one batch.
    call.state.apply_operations(operations)
    return Reply(207, {"errors": errors}) if errors else Reply(200, {})


# ---- control routes


def _control_list_requests(call: Call) -> Reply:
    since = call.query.get("since") or "0"
    if not since.isdigit():
        raise EmulatorInputError("since must be a non-negative integer")
    entries = call.state.requests(int(since), call.query.get("path_prefix"), call.query.get("method"))
    return Reply(200, entries)


def _control_clear_requests(call: Call) -> Reply:
    return Reply(200, {"cleared": call.state.clear_requests()})


def _control_upsert_customer(call: Call) -> Reply:
    return Reply(200, call.state.upsert_customer(call.body.value))


def _control_get_customer(call: Call) -> Reply:
    customer = call.state.customer(call.params["identifier"])
    return Reply(200, customer) if customer else control_error(404, "no such customer")


def _control_get_customer_events(call: Call) -> Reply:
    events = call.state.events(call.params["identifier"], call.query.get("name"))
    return Reply(200, events) if events is not None else control_error(404, "no such customer")


def _control_list_events(call: Call) -> Reply:
    return Reply(200, call.state.all_events(call.query.get("name")))


def _control_upsert_segment(call: Call) -> Reply:
    return Reply(200, call.state.upsert_segment(call.body.value))


def _control_get_faults(call: Call) -> Reply:
    return Reply(200, call.state.faults())


def _control_set_faults(call: Call) -> Reply:
    return Reply(200, call.state.set_faults({} if call.body.empty else call.body.value))


def _control_get_settings(call: Call) -> Reply:
    return Reply(200, call.state.settings())


def _control_update_settings(call: Call) -> Reply:
    return Reply(200, call.state.update_settings({} if call.body.empty else call.body.value))


def _control_reset(call: Call) -> Reply:
    document = {} if call.body.empty else call.body.value
    if not isinstance(document, dict) or set(document) - {"fixture"}:
        raise EmulatorInputError('reset takes no body or {"fixture": {...}}')
    return Reply(200, call.state.reset(document.get("fixture")))


def _control_load(call: Call) -> Reply:
    return Reply(200, call.state.load_fixture(call.body.value))


def _control_status(call: Call) -> Reply:
    return Reply(200, call.state.status())


def _control_send_reporting_webhook(call: Call) -> Reply:
    return Reply(*reporting.send(call.state, call.body.value))


# ---- routing

Route = tuple[str, re.Pattern, Callable[[Call], Reply]]


def _routes(*table: tuple[str, str, Callable[[Call], Reply]]) -> tuple[Route, ...]:
    return tuple((method, re.compile(pattern), handler) for method, pattern, handler in table)


_SEGMENT = r"(?P<segment_id>[^/]+)"
_IDENTIFIER = r"(?P<identifier>[^/]+)"

APP_ROUTES = _routes(
    ("GET", r"/v1/segments", _get_segments),
    ("GET", rf"/v1/segments/{_SEGMENT}", _get_segment),
    ("GET", rf"/v1/segments/{_SEGMENT}/membership", _get_membership),
    ("GET", rf"/v1/segments/{_SEGMENT}/customer_count", _get_customer_count),
    ("POST", r"/v1/customers/attributes", _post_customers_attributes),
    ("GET", rf"/v1/customers/{_IDENTIFIER}/attributes", _get_customer_attributes),
    ("GET", rf"/v1/customers/{_IDENTIFIER}/segments", _get_customer_segments),
)
TRACK_ROUTES = _routes(
    ("PUT", rf"/api/v1/customers/{_IDENTIFIER}", _put_customer),
    ("POST", r"/api/v2/batch", _post_batch),
    ("POST", rf"/api/v1/segments/{_SEGMENT}/add_customers", _add_customers),
    ("POST", rf"/api/v1/segments/{_SEGMENT}/remove_customers", _remove_customers),
)
CONTROL_ROUTES = _routes(
    ("GET", r"/_emulator/requests", _control_list_requests),
    ("DELETE", r"/_emulator/requests", _control_clear_requests),
    ("POST", r"/_emulator/customers", _control_upsert_customer),
    ("GET", rf"/_emulator/customers/{_IDENTIFIER}", _control_get_customer),
    ("GET", rf"/_emulator/customers/{_IDENTIFIER}/events", _control_get_customer_events),
    ("GET", r"/_emulator/events", _control_list_events),
    ("POST", r"/_emulator/segments", _control_upsert_segment),
    ("GET", r"/_emulator/faults", _control_get_faults),
    ("POST", r"/_emulator/faults", _control_set_faults),
    ("GET", r"/_emulator/settings", _control_get_settings),
    ("POST", r"/_emulator/settings", _control_update_settings),
    ("POST", r"/_emulator/reset", _control_reset),
    ("POST", r"/_emulator/load", _control_load),
    ("GET", r"/_emulator/status", _control_status),
    ("POST", r"/_emulator/reporting_webhooks", _control_send_reporting_webhook),
)


def match_route(
    routes: tuple[Route, ...], method: str, raw_path: str
) -> tuple[Callable[[Call], Reply], dict[str, str]] | int:
    """The route function and its decoded path parameters, or 404/405 when nothing answers this request."""
    path_known = False
    for route_method, pattern, handler in routes:
        match = pattern.fullmatch(raw_path)
        if match:
            path_known = True
            if route_method == method:
                # Parameters are decoded after matching so that an encoded "/" stays inside its segment.
                return handler, {name: unquote(value) for name, value in match.groupdict().items()}
    return 405 if path_known else 404
