"""Customer.io's Track API, as the site writes to it: people's attributes, manual segments' members, and v2 batches.

Writes only, with HTTP Basic site id and key; not rate limited by Customer.io, so not by the shared limiter either.
Split into as few calls as Customer.io's documented limits allow.
"""

import json
from dataclasses import dataclass, field

from .errors import CustomerIOError, Unauthorized
from .transport import Transport, path_segment

# People added to or removed from a manual segment in one call.
SEGMENT_CHANGE_LIMIT = 1000
# Customer.io's documented v2 batch limits ("500kb" a request, "32kb" an entry), read as the smaller of the two ways
# a kilobyte is counted: a request a few bytes over would be refused as a whole.
BATCH_REQUEST_MAX_BYTES = 500 * 1000
BATCH_OPERATION_MAX_BYTES = 32 * 1000


@dataclass
class BatchFailure:
    index: int  # position in the operations passed to batch()
    reason: str
    # Whether sending the operation again can succeed: not for one too large or one Customer.io refused as invalid
    # (207), yes for a request that failed as a whole (5xx, timeout).
    retryable: bool = False


@dataclass
class BatchResult:
    sent: int = 0
    requests: int = 0
    failures: list[BatchFailure] = field(default_factory=list)


def identify_operation(identifiers: dict, attributes: dict, update_only: bool = True) -> dict:
    """One /api/v2/batch person identify operation. `identifiers` holds exactly one of email, id, cio_id."""
    body = {**attributes, "_update": True} if update_only else dict(attributes)
    return {"type": "person", "identifiers": identifiers, "action": "identify", "attributes": body}


class TrackAPI(Transport):
    def identify(
        self, identifier: str, attributes: dict, update_only: bool = True, *, deadline: float | None = None
    ) -> None:
        """Set attributes on a person (`cio_<cio_id>` identifies by cio_id). With update_only Customer.io answers
        200 even when nobody has that identifier, so only a non-2xx answer is a failure."""
        body = {**attributes, "_update": True} if update_only else dict(attributes)
        self._track("PUT", f"/api/v1/customers/{path_segment(identifier)}", json=body, deadline=deadline)

    def add_to_segment(
        self, segment_id: int, ids: list[str], id_type: str = "cio_id", *, deadline: float | None = None
    ) -> int:
        """Add people to a manual segment, SEGMENT_CHANGE_LIMIT per call. Customer.io creates a person for an id it
        does not know: send only people it knows. Returns the number of calls made."""
        return self._change_segment("add_customers", segment_id, ids, id_type, deadline)

    def remove_from_segment(
        self, segment_id: int, ids: list[str], id_type: str = "cio_id", *, deadline: float | None = None
    ) -> int:
        """Remove people from a manual segment, SEGMENT_CHANGE_LIMIT per call. Returns the number of calls made."""
        return self._change_segment("remove_customers", segment_id, ids, id_type, deadline)

    def _change_segment(self, verb: str, segment_id: int, ids: list[str], id_type: str, deadline) -> int:
        if id_type not in ("id", "email", "cio_id"):
            raise ValueError(f"id_type must be id, email or cio_id, not {id_type!r}")
        calls = 0
        for start in range(0, len(ids), SEGMENT_CHANGE_LIMIT):
            chunk = list(ids[start : start + SEGMENT_CHANGE_LIMIT])
            path = f"/api/v1/segments/{int(segment_id)}/{verb}"
            self._track("POST", path, params={"id_type": id_type}, json={"ids": chunk}, deadline=deadline)
            calls += 1
        return calls

    def batch(self, operations: list[dict], *, deadline: float | None = None) -> BatchResult:
        """Send v2 batch operations in as few requests as the size limits allow. Returns the failures by index
        (from 207 answers, operations too large to send, or requests that failed as a whole)."""
        result = BatchResult()
        chunk: list[tuple[int, bytes]] = []
        chunk_bytes = len(b'{"batch":[]}')
        for index, operation in enumerate(operations):
            encoded = json.dumps(operation, separators=(",", ":")).encode()
            if len(encoded) > BATCH_OPERATION_MAX_BYTES:
                result.failures.append(BatchFailure(index, "operation larger than 32 KB"))  # never sendable
                continue
            if chunk and chunk_bytes + len(encoded) + 1 >= BATCH_REQUEST_MAX_BYTES:
                self._send_batch_chunk(chunk, result, deadline)
                chunk, chunk_bytes = [], len(b'{"batch":[]}')
            chunk.append((index, encoded))
            chunk_bytes += len(encoded) + 1
        if chunk:
            self._send_batch_chunk(chunk, result, deadline)
        return result

    def _send_batch_chunk(self, chunk: list[tuple[int, bytes]], result: BatchResult, deadline) -> None:
        body = b'{"batch":[' + b",".join(encoded for _, encoded in chunk) + b"]}"
        result.requests += 1
        try:
            answer = self._track("POST", "/api/v2/batch", data=body, deadline=deadline)
        except Unauthorized:
            raise
        except CustomerIOError as exc:
            # A request refused as a whole says nothing against any one entry: every entry may be tried again.
            result.failures.extend(BatchFailure(index, str(exc), retryable=True) for index, _ in chunk)
            return
        failed_positions = set()
        for error in answer.get("errors") or []:
            position = error.get("batch_index")
            if isinstance(position, int) and 0 <= position < len(chunk) and position not in failed_positions:
                failed_positions.add(position)
                reason = error.get("message") or error.get("reason") or "rejected"
                result.failures.append(BatchFailure(chunk[position][0], str(reason)))
        result.sent += len(chunk) - len(failed_positions)
