"""Coalescing one contact's concurrent deliveries: a delivery that waited for the contact's lock behind another may
answer with that one's result instead of reading Customer.io again — when that processing read Customer.io after
this delivery was received (so it saw at least what this one would have) and its action did at least as much.

What the last reading processing did lives on the contact's lock row (ContactLock), written in that processing's
transaction: every process and host sees it as soon as the lock is released, and never a half-done processing's.

On SQLite the reads happen before the lock (see actions._read_before_writing), so the deliveries of one contact that
a process serves at once take turns before reading instead (one_reader_at_a_time): the later ones then find the
first one's result. Across processes they still read for themselves, as before.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

from ...emails import normalize_email
from ...models import ContactLock, User


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
    if not request.may_reuse or request.received_at is None:
        return None
    row = (
        ContactLock.objects.filter(
            key=request.contact.lock_key, read_at__gt=request.received_at, read_strength__gte=request.strength
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


@contextmanager
def one_reader_at_a_time(key: str, deadline: float | None) -> Iterator[None]:
    """This process's deliveries for one contact, one after another (SQLite). Past the deadline a delivery goes
    ahead anyway: it then reads for itself, as it would without coalescing."""
    with _turns_lock:
        turn = _turns.setdefault(key, [threading.Lock(), 0])
        turn[1] += 1
    timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
    acquired = turn[0].acquire(timeout=timeout)
    try:
        yield
    finally:
        if acquired:
            turn[0].release()
        with _turns_lock:
            turn[1] -= 1
            if turn[1] == 0:
                _turns.pop(key, None)
