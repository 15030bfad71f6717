"""Requests refused for a wrong or missing access key: answered for almost nothing, counted, never stored or logged
one by one.

Anyone can send them, so a refused request writes nothing of its own anywhere — no delivery row, no activity line:

- The throttle. After WEBHOOK_REFUSED_PER_MINUTE refusals in a minute from one address (IPv6: per /64), the rest of
  that minute are answered 429 with Retry-After. The counters live in Django's cache — shared by every process with
  REDIS_URL, per process otherwise — one key per address and minute, incremented atomically, expiring by itself.
  Only refusals consult them: a request with the right key never reaches this module.
- The tally. Each process counts its refusals per address for the current minute in memory. The first refusal
  after that minute has ended (from any address) writes the finished minute to RefusedRequestWindow, one row per
  address per hour: at most one write per address per minute per process. A process that refuses one request and
  then nothing keeps it in memory until its next refusal or its exit (written then, best effort).
- The summary. The activity log gets one WARNING line when an address's row for an hour is created — never one per
  request; later minutes of that hour only add to the row. The Python log gets one WARNING line per address per
  minute with its count (the view keeps Django's per-response line out), so a flood cannot fill the disk through
  the logs either.
- The cap. The table holds at most WEBHOOK_REFUSED_MAX_ROWS address rows; addresses past it are counted together
  in the hour's overflow row, so the table stays bounded whatever the number of addresses. The same number bounds
  the addresses one process tallies per minute (the rest go to its overflow tally).

Why hand-written: DRF's throttles count every request (the right key included) with a non-atomic read-modify-write
of a timestamp list in the cache, and django-axes writes a database row per failure; neither aggregates.
"""

import atexit
import contextlib
import ipaddress
import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from users.models import ActivityLog
from users.services.activity import log_activity
from users.text import clean_text

from ..models import RefusedRequestWindow

logger = logging.getLogger(__name__)

MINUTE = 60
WINDOW_SECONDS = 3600  # one RefusedRequestWindow row per address per hour
MAX_ACTIONS = 5  # distinct wpf_action values kept per row (each cut to 32 characters, as on deliveries)
ACTION_LENGTH = 32
COUNTER_PREFIX = "webhooks:refused:"
OVERFLOW = ""  # the address of the overflow tally and row
# Addresses named in the log per minute and process (the busiest); the others share one line. Spread over many
# addresses (IPv6 /64s are cheap), a flood still writes a few lines a minute.
LOGGED_ADDRESSES = 10

# Seconds since the epoch; tests move it.
clock = time.time


def address_bucket(address: str | None) -> str:
    """What refusals are counted by: the IPv4 address, or the /64 network of an IPv6 one (one subscriber's
    allocation: counting single IPv6 addresses would let anyone spread over 2^64 of them)."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if parsed.version == 6:
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


@dataclass(frozen=True)
class Refusal:
    # Seconds to the end of the minute when the address is over the throttle's limit (answer 429), else None (403).
    retry_after: int | None

    @property
    def throttled(self) -> bool:
        return self.retry_after is not None


def refuse(address: str | None, action: object, *, key_sent: bool) -> Refusal:
    """Count a request refused for its key (`key_sent`: a wrong key rather than none) and say how to answer it.
    Costs a cache increment and a dictionary update; once a minute per process, the previous minute's tallies
    are written."""
    now = clock()
    bucket = address_bucket(address)
    retry_after = _over_limit(bucket, now)
    action = clean_text(str(action or ""))[:ACTION_LENGTH]  # a %00 in the query must not reach the database
    _tallies.add(bucket, now, action=action, key_sent=key_sent, throttled=retry_after is not None)
    return Refusal(retry_after)


# The throttle ------------------------------------------------------------------------------------------------------

_cache_warned_at = 0.0


def _over_limit(bucket: str, now: float) -> int | None:
    limit = settings.WEBHOOK_REFUSED_PER_MINUTE
    if limit <= 0:
        return None
    minute = int(now // MINUTE)
    try:
        count = _increment(f"{COUNTER_PREFIX}{bucket}:{minute}")
    except Exception as error:  # the cache is down: refuse with 403, unthrottled, rather than fail
        _warn_cache_unavailable(error, now)
        return None
    if count <= limit:
        return None
    return max(1, math.ceil((minute + 1) * MINUTE - now))


def _increment(key: str) -> int:
    """Atomic in LocMemCache and Redis alike: incr an existing counter, else add it (with its expiry), and if another
    thread or process added it first, incr that one."""
    try:
        return cache.incr(key)
    except ValueError:
        pass
    # Two minutes: a counter outlives its minute whatever the clock skew between processes, then disappears.
    if cache.add(key, 1, timeout=2 * MINUTE):
        return 1
    return cache.incr(key)


def _warn_cache_unavailable(error: Exception, now: float) -> None:
    global _cache_warned_at
    if now - _cache_warned_at >= MINUTE:  # once a minute, not once per request
        _cache_warned_at = now
        logger.warning("Refused-request throttle off for now: the cache is unavailable (%s)", error)


# The tally ---------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One address's refusals in one minute, in this process."""

    address: str
    minute: int
    first_seen: float
    last_seen: float
    wrong_key: int = 0
    missing_key: int = 0
    throttled: int = 0
    actions: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.wrong_key + self.missing_key

    def note(self, now: float, *, action: str, key_sent: bool, throttled: bool) -> None:
        self.last_seen = max(self.last_seen, now)
        if key_sent:
            self.wrong_key += 1
        else:
            self.missing_key += 1
        self.throttled += throttled
        self.actions = merged_actions(self.actions, [action])

    def absorb(self, other: "Tally") -> None:
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.wrong_key += other.wrong_key
        self.missing_key += other.missing_key
        self.throttled += other.throttled
        self.actions = merged_actions(self.actions, other.actions)


def merged_actions(kept: list[str], more: list[str]) -> list[str]:
    merged = list(kept)
    for action in more:
        if len(merged) >= MAX_ACTIONS:
            break
        if action not in merged:
            merged.append(action)
    return merged


class Tallies:
    """This process's refusals of the current minute, per address; a minute's tallies are written when it ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._minute: int | None = None
        self._current: dict[str, Tally] = {}

    def add(self, bucket: str, now: float, *, action: str, key_sent: bool, throttled: bool) -> None:
        minute = int(now // MINUTE)
        finished = None
        with self._lock:
            if minute != self._minute:
                finished, self._current, self._minute = self._current, {}, minute
            tally = self._current.get(bucket)
            if tally is None:
                if len(self._current) >= settings.WEBHOOK_REFUSED_MAX_ROWS:
                    bucket = OVERFLOW
                    tally = self._current.get(bucket)
                if tally is None:
                    tally = self._current[bucket] = Tally(bucket, minute, first_seen=now, last_seen=now)
            tally.note(now, action=action, key_sent=key_sent, throttled=throttled)
        if finished:
            write(list(finished.values()))

    def flush(self) -> None:
        """Write every tally now, the current minute's too (process exit, tests)."""
        with self._lock:
            finished, self._current, self._minute = self._current, {}, None
        if finished:
            write(list(finished.values()))

    def forget(self) -> None:
        with self._lock:
            self._current, self._minute = {}, None


_tallies = Tallies()


def flush() -> None:
    _tallies.flush()


def forget() -> None:
    """Drop this process's unwritten tallies (tests start from nothing)."""
    _tallies.forget()


@atexit.register
def _flush_at_exit() -> None:
    # At exit the database may be gone already: then the tally is lost, nothing else.
    with contextlib.suppress(Exception):
        _tallies.flush()


# Writing -----------------------------------------------------------------------------------------------------------


def write(tallies: list[Tally]) -> None:
    """Add finished minutes' tallies to their hours' rows, creating rows (and their activity line) as needed, and
    log one line per address (or overflow) per minute — never one per refused request — for the
    LOGGED_ADDRESSES addresses that sent the most, and one line for the rest."""
    busiest = sorted(tallies, key=lambda tally: tally.count, reverse=True)
    for tally in busiest[:LOGGED_ADDRESSES]:
        _log_minute(tally)
    rest = busiest[LOGGED_ADDRESSES:]
    if rest:
        logger.warning(
            "Refused %d more webhook requests from %d more addresses in the same minute (Webhooks -> Refused requests)",
            sum(tally.count for tally in rest),
            len(rest),
        )
    windows: dict[int, list[Tally]] = defaultdict(list)
    for tally in tallies:
        windows[tally.minute * MINUTE // WINDOW_SECONDS * WINDOW_SECONDS].append(tally)
    try:
        with transaction.atomic():
            for start, window_tallies in sorted(windows.items()):
                _write_window(_datetime(start), window_tallies)
    except DatabaseError as error:
        # Counting must never fail the answer; losing a minute's count of refusals is the lesser harm.
        lost = sum(tally.count for tally in tallies)
        logger.warning("Could not record %d refused webhook requests: %s", lost, error)


def _write_window(window_start: datetime, tallies: list[Tally]) -> None:
    overflow = None
    by_address = {}
    for tally in tallies:
        if tally.address == OVERFLOW:
            overflow = _absorbed(overflow, tally)
        else:
            by_address[tally.address] = _absorbed(by_address.get(tally.address), tally, tally.address)
    rows = RefusedRequestWindow.objects.select_for_update()
    # One address at a time, in address order — its row locked, or inserted (which locks its key) — so that two
    # processes writing overlapping addresses of one hour always take their locks in the same order: no deadlock.
    room = None
    for address in sorted(by_address):
        tally = by_address[address]
        row = rows.filter(window_start=window_start, address=address).first()
        if row is None:
            if room is None:
                room = settings.WEBHOOK_REFUSED_MAX_ROWS - RefusedRequestWindow.objects.filter(overflow=False).count()
            if room <= 0:
                overflow = _absorbed(overflow, tally)
                continue
            room -= 1
        _add_or_create(window_start, tally, row)
    if overflow is not None:
        # The overflow row's address sorts before every real one, but it is taken last here: a process holding
        # it holds no other row's lock it could wait for afterwards, so the order stays acyclic.
        _add_or_create(window_start, overflow, rows.filter(window_start=window_start, address=OVERFLOW).first())


def _absorbed(total: Tally | None, tally: Tally, address: str = OVERFLOW) -> Tally:
    """`total` (a new tally for `address` when None) with `tally` added to it."""
    if total is None:
        total = Tally(address, tally.minute, first_seen=tally.first_seen, last_seen=tally.last_seen)
    total.absorb(tally)
    return total


def _add_or_create(window_start: datetime, tally: Tally, row: RefusedRequestWindow | None) -> None:
    if row is None:
        try:
            with transaction.atomic():
                row = RefusedRequestWindow.objects.create(
                    window_start=window_start,
                    address=tally.address,
                    overflow=tally.address == OVERFLOW,
                    count=tally.count,
                    wrong_key=tally.wrong_key,
                    missing_key=tally.missing_key,
                    throttled=tally.throttled,
                    first_seen=_datetime(tally.first_seen),
                    last_seen=_datetime(tally.last_seen),
                    actions=tally.actions,
                )
        except IntegrityError:
            # Another process created the hour's row meanwhile: add to it (it wrote the summary).
            row = RefusedRequestWindow.objects.select_for_update().get(window_start=window_start, address=tally.address)
        else:
            _summarise(row, tally)
            return
    # The row is locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE transaction holds the write lock):
    # the seen times and actions may be merged here, the counts are added in the database all the same.
    RefusedRequestWindow.objects.filter(pk=row.pk).update(
        count=F("count") + tally.count,
        wrong_key=F("wrong_key") + tally.wrong_key,
        missing_key=F("missing_key") + tally.missing_key,
        throttled=F("throttled") + tally.throttled,
        first_seen=min(row.first_seen, _datetime(tally.first_seen)),
        last_seen=max(row.last_seen, _datetime(tally.last_seen)),
        actions=merged_actions(row.actions or [], tally.actions),
    )


def _log_minute(tally: Tally) -> None:
    who = "addresses past WEBHOOK_REFUSED_MAX_ROWS" if tally.address == OVERFLOW else tally.address
    throttled = f", {tally.throttled} answered 429" if tally.throttled else ""
    logger.warning(
        "Refused %d webhook request%s %s from %s in the minute from %s%s",
        tally.count,
        "" if tally.count == 1 else "s",
        reason(tally.wrong_key, tally.missing_key),
        who,
        f"{_datetime(tally.minute * MINUTE):%H:%M} UTC",
        throttled,
    )


def reason(wrong_key: int, missing_key: int) -> str:
    if wrong_key and missing_key:
        return "with a wrong or missing access key"
    return "without an access key" if missing_key else "with a wrong access key"


def _summarise(row: RefusedRequestWindow, tally: Tally) -> None:
    """The hour's one activity line for this address (or for the overflow)."""
    started = timezone.localtime(_datetime(tally.first_seen))
    until = timezone.localtime(row.window_start + timedelta(seconds=WINDOW_SECONDS))
    who = (
        f"from addresses past the table's {settings.WEBHOOK_REFUSED_MAX_ROWS} rows (WEBHOOK_REFUSED_MAX_ROWS)"
        if row.overflow
        else f"from {row.address}"
    )
    plural = "" if tally.count == 1 else "s"
    throttled = f" ({tally.throttled} answered 429)" if tally.throttled else ""
    log_activity(
        ActivityLog.Source.WEBHOOK,
        f"Refused {tally.count} webhook request{plural} {reason(tally.wrong_key, tally.missing_key)} {who} in the "
        f"minute from {started:%H:%M %Z}{throttled}. More until {until:%H:%M %Z} are only counted under "
        "Webhooks → Refused requests.",
        level=ActivityLog.Level.WARNING,
        context={
            "address": row.address,
            "overflow": row.overflow,
            "refused": tally.count,
            "wrong_key": tally.wrong_key,
            "missing_key": tally.missing_key,
            "throttled": tally.throttled,
            "actions": tally.actions,
        },
    )


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
