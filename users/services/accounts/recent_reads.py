"""Coalescing one contact's concurrent deliveries: a delivery that waited for the contact's lock behind another may
answer with that one's result instead of reading Customer.io again.

The rule. The last processing of the contact that read Customer.io answers a delivery when its action did at least
as much (webhooks.actions strength) with the same role=, and it began reading after the delivery counts as received
(counted_as_received):

- A webhook is sent because something changed in Customer.io. A read that began after the delivery arrived saw that
  change; one that began before may not have. So a delivery counts as received when it arrived,
- except when it is a copy that arrived while another copy was still being answered. Copies are deliveries of the
  same request for the same person (same action, query and body), each its own Customer.io delivery: several
  journeys or steps firing on one change send them together. The site spreads their arrival out itself — busy
  threads, the connection pool, SQLite's write lock — so the moment a copy got through says nothing about when it was
  sent. Copies whose processings overlap (each arrived before an earlier one was answered) are one run, and every
  copy of a run counts as received when its first one arrived: a read that began after that answers them all, the
  ones that arrived while it was under way or while its result was still being handed out included.

The cost, taken knowingly: a copy that was in fact sent because of a change made after the run's read began, and
arrived while earlier copies were still being answered, gets that read's result — the answer it would have had
arriving a moment earlier. A run reaches back at most WEBHOOK_SYNC_DEADLINE (the time one synchronous processing may
take) from a delivery's arrival, so a stream of copies cannot live on one read. A delivery that is not a copy
(another action, option or body) or that arrives once every copy before it has been answered reads for itself.

What the last reading processing did lives on the contact's lock row (ContactLock), written in that processing's
transaction: every process and host sees it as soon as the lock is released, and never a half-done processing's.

On SQLite the reads happen before the lock (see actions._read_before_writing), so the synchronous deliveries of one
contact take turns before reading instead (one_reader_at_a_time): within a process on a lock, across processes on a
claim written on the contact's lock row. The later ones then find the first one's result.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from ...emails import normalize_email
from ...models import ContactLock, User

logger = logging.getLogger(__name__)


class Copy(NamedTuple):
    """Another delivery of the same request for the same person, received before this one."""

    received_at: datetime
    answered_at: datetime | None  # None: still being processed


def copies_since(received_at: datetime) -> datetime:
    """How far back the copies of a delivery received at `received_at` can make it count as received."""
    return received_at - timedelta(seconds=settings.WEBHOOK_SYNC_DEADLINE)


def counted_as_received(request) -> datetime | None:
    """When the delivery counts as received (see the rule above): the arrival of the first copy of its run, or its
    own arrival."""
    received_at = request.received_at
    if received_at is None:
        return None
    earliest = copies_since(received_at)
    run_start = run_end = None
    for copy in sorted(request.copies, key=lambda copy: copy.received_at):
        if not earliest <= copy.received_at <= received_at:
            continue
        # Still being processed now, so it was when this delivery arrived.
        answered_at = received_at if copy.answered_at is None else copy.answered_at
        if run_end is None or copy.received_at > run_end:
            run_start, run_end = copy.received_at, answered_at
        else:
            run_end = max(run_end, answered_at)
    if run_end is not None and run_end >= received_at:
        return run_start
    return received_at


class Reads:
    """When the data a processing applies was read. Data handed in by the caller (a webhook body's attributes,
    a batch call made for many contacts) counts as read when the delivery was received — no later is known."""

    def __init__(self, request):
        self.request = request
        self.handed_in = request.person is not None or request.segments is not None
        self.at: datetime | None = request.received_at if self.handed_in else None
        self.made = False

    def reading(self) -> None:
        """Called before each Customer.io read of this processing."""
        self.made = True
        if self.at is None and not self.handed_in:
            self.at = timezone.now()


def recent_result(request, action: str) -> tuple[dict, User | None] | None:
    """The answer of the contact's last processing, if this delivery may reuse it: (its result, its user)."""
    received_at = counted_as_received(request) if request.may_reuse else None
    if received_at is None:
        return None
    row = (
        ContactLock.objects.filter(
            key=request.contact.lock_key, read_at__gt=received_at, read_strength__gte=request.strength
        )
        .values("read_result", "read_user_id", "read_role")
        .first()
    )
    if row is None or not row["read_result"]:
        return None
    if action != "update_tags" and row["read_role"] != (request.role or ""):
        return None  # it applied another role= than this delivery asks for
    user = None
    if row["read_user_id"] is not None:
        user = User.objects.select_related("role").filter(pk=row["read_user_id"]).first()
        if user is None:
            return None  # deleted since: read again
    contact = request.contact
    # Named by cio_id with an email beside it: when that email is not the user's as the last processing left them,
    # the person's email changed in between, and this delivery settles it (settle_identity) itself.
    renamed = user is None or normalize_email(contact.known_email) != user.email_normalized
    if contact.known_cio_id and contact.known_email and renamed:
        return None
    return row["read_result"], user


def remember(request, reads: Reads, result: dict, user: User | None) -> None:
    """Record this processing's read and answer on the contact's lock row (call inside its transaction, under the
    lock). Nothing is recorded for a processing that read nothing, or whose data's time is unknown."""
    if not reads.made or reads.at is None:
        return
    ContactLock.objects.filter(key=request.contact.lock_key).update(
        read_at=reads.at,
        read_strength=request.strength,
        read_role=request.role or "",
        read_result=result,
        read_user_id=user.pk if user is not None else None,
    )


_turns: dict[str, list] = {}  # contact lock key -> [lock, holders and waiters]
_turns_lock = threading.Lock()

# How often a delivery waiting for another process's claim looks again. A look is one indexed SELECT, which SQLite
# serves beside its writer.
CLAIM_POLL_SECONDS = 0.02
# A claim lasts until the claimer's deadline (its Customer.io calls end by then) plus the time to write what it read;
# without a deadline, long enough for any processing. A claimer whose process died holds nobody up for longer.
CLAIM_AFTER_DEADLINE = timedelta(seconds=2)
UNBOUNDED_CLAIM = timedelta(seconds=30)


@contextmanager
def one_reader_at_a_time(key: str, deadline: float | None) -> Iterator[None]:
    """The site's synchronous deliveries for one contact, one after another (SQLite): this process's wait on a lock,
    and the one whose turn it is waits for other processes' claims on the contact's lock row. Past the deadline a
    delivery goes ahead anyway: it then reads for itself, as it would without coalescing."""
    with _turns_lock:
        turn = _turns.setdefault(key, [threading.Lock(), 0])
        turn[1] += 1
    acquired = turn[0].acquire(timeout=_seconds_left(deadline, default=-1))
    claim = None
    try:
        try:
            claim = _claim_across_processes(key, deadline)
        except DatabaseError as error:
            # SQLite busy past its timeout (a worker's long write): go ahead unclaimed and read for itself, as
            # without coalescing, rather than fail the webhook.
            logger.warning("Reading %s without a claim: %s", key, error)
        yield
    finally:
        if claim is not None:
            try:
                ContactLock.objects.filter(key=key, read_claimed_until=claim).update(read_claimed_until=None)
            except DatabaseError as error:  # the claim then runs out by itself (CLAIM_AFTER_DEADLINE)
                logger.warning("Could not release the read claim on %s: %s", key, error)
        if acquired:
            turn[0].release()
        with _turns_lock:
            turn[1] -= 1
            if turn[1] == 0:
                _turns.pop(key, None)


def _claim_across_processes(key: str, deadline: float | None) -> datetime | None:
    """Claim the contact for this processing once no other process holds a claim (or theirs ran out); returns the
    claim's end, which names it for its release. None past the deadline, unclaimed."""
    while True:
        now = timezone.now()
        seconds = _seconds_left(deadline, default=None)
        until = now + (UNBOUNDED_CLAIM if seconds is None else timedelta(seconds=seconds) + CLAIM_AFTER_DEADLINE)
        # Looked at before written: a waiting delivery's UPDATE would queue for SQLite's one writer at every look.
        held = list(ContactLock.objects.filter(key=key).values_list("read_claimed_until", flat=True)[:1])
        if not held:
            ContactLock.objects.bulk_create([ContactLock(key=key)], ignore_conflicts=True)
            continue
        if held[0] is None or held[0] <= now:
            free = Q(read_claimed_until__isnull=True) | Q(read_claimed_until__lte=now)
            if ContactLock.objects.filter(free, key=key).update(read_claimed_until=until):
                return until
        if seconds is not None and seconds <= 0:
            return None
        time.sleep(CLAIM_POLL_SECONDS if seconds is None else min(CLAIM_POLL_SECONDS, seconds))


def _seconds_left(deadline: float | None, *, default):
    return default if deadline is None else max(0.0, deadline - time.monotonic())
