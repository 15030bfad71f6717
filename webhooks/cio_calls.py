"""Calls to Customer.io per hour, per API and kind of answer (CustomerIOCallHour), for the admin overview.

Fed by cio's `api_call_finished` signal (sent after every HTTP attempt, retries included). A call must not cost a
database write, so each process counts its calls in memory and adds them to the hour's rows at most once a minute:
on the first call after that minute (as webhooks.intake.refusals does for refused requests), in the worker's sweep
(so that an idle worker's counts arrive within a minute too), and at a clean exit. A process that makes a call and
then nothing keeps it in memory until one of those. Counting never fails a call: a count the database refuses is
logged and dropped.

Not written inside a transaction the caller holds: its rollback would undo the count, and the hour's row would stay
locked until the caller commits. The counts then wait for the next call made outside one.
"""

import atexit
import contextlib
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F

from .models import CustomerIOCallHour

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 60
HOUR = 3600
Answer = CustomerIOCallHour.Answer

# Seconds since the epoch; tests move it.
clock = time.time


def answer_kind(status: int | None) -> str:
    """The kind of answer a call got: its HTTP status (None: no answer came) in one of a few classes."""
    if status is None:
        return Answer.NO_ANSWER
    if status == 429:
        return Answer.RATE_LIMITED
    if status >= 500:
        return Answer.SERVER_ERROR
    if status >= 400:
        return Answer.CLIENT_ERROR
    return Answer.OK


class CallCounts:
    """This process's calls not written yet, per (hour start, api, kind of answer)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: Counter[tuple[int, str, str]] = Counter()
        self._flushed_at = clock()

    def add(self, api: str, status: int | None) -> None:
        now = clock()
        with self._lock:
            self._counts[(int(now // HOUR) * HOUR, str(api)[:8], answer_kind(status))] += 1
        self.flush_if_due(now)

    def flush_if_due(self, now: float | None = None) -> None:
        now = clock() if now is None else now
        if now - self._flushed_at >= FLUSH_SECONDS:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Write what was counted (unless inside the caller's transaction: then it waits for a later flush)."""
        if connection.in_atomic_block:
            return
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._flushed_at = clock() if now is None else now
        if counts:
            write(counts)

    def forget(self) -> None:
        with self._lock:
            self._counts = Counter()
            self._flushed_at = clock()

    def pending(self) -> int:
        with self._lock:
            return sum(self._counts.values())


_counts = CallCounts()


def count_call(sender, *, api, status=None, **kwargs) -> None:
    """api_call_finished's receiver (connected in WebhooksConfig.ready)."""
    _counts.add(api, status)


def flush() -> None:
    _counts.flush()


def flush_if_due() -> None:
    _counts.flush_if_due()


def forget() -> None:
    """Drop this process's unwritten counts (tests start from nothing)."""
    _counts.forget()


@atexit.register
def _flush_at_exit() -> None:
    # At exit the database may be gone already: then the counts are lost, nothing else.
    with contextlib.suppress(Exception):
        _counts.flush()


def write(counts: Counter) -> None:
    """Add the counts to their hours' rows, creating rows as needed (one UPDATE per row; an INSERT for a new one)."""
    try:
        with transaction.atomic():
            # In key order, so that two processes writing the same rows take their locks in the same order.
            for (hour, api, answer), count in sorted(counts.items()):
                _add(datetime.fromtimestamp(hour, tz=UTC), api, answer, count)
    except DatabaseError as error:
        logger.warning("Could not record %d Customer.io calls: %s", sum(counts.values()), error)


def _add(hour: datetime, api: str, answer: str, count: int) -> None:
    rows = CustomerIOCallHour.objects.filter(hour=hour, api=api, answer=answer)
    if rows.update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            CustomerIOCallHour.objects.create(hour=hour, api=api, answer=answer, count=count)
    except IntegrityError:
        # Another process created the row meanwhile: add to it.
        rows.update(count=F("count") + count)
