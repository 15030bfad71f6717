"""A rate limiter shared by every process that uses the database.

Customer.io's App API allows 10 requests per second per workspace. Web processes and background workers share
one budget, so the limiter's state lives in the database: a row holding the times of the recent requests (below).

On PostgreSQL the limiter uses its own autocommit connection: a caller may hold a long transaction (the
per-contact lock while Customer.io answers), and a row lock taken inside it would stall every other process
until that transaction ends. On SQLite there is one writer at a time anyway, so the limiter writes through
Django's connection (inside the caller's transaction when there is one).

Without the database there is no grant: a request waiting for a slot fails with Django's OperationalError (the
webhook answers 503, the queue retries), so hosts that lost the database send nothing rather than each guessing its
share. Redis plays no part, so its outages change nothing here.

What is counted is when each request reached Customer.io, and the only time known to be no earlier than that is
when its answer came back. So a grant is stored as "in flight" until its answer is in (Transport calls finished()),
counted meanwhile as if it were arriving right now, and then as having arrived when the answer came. A slot is free
when the tenth-latest of those is more than a second old. However late a granted request leaves its host (a busy CPU,
Python's GIL), it and the ten after it cannot reach Customer.io within one second; what this costs is the answer's
own latency on each slot's turn (milliseconds), where a fixed margin on grant times costs its width and still leaks.

Times are read from one clock for everyone: on PostgreSQL the database's (`clock_timestamp()`, read once the row is
locked), so that worker hosts whose clocks disagree still share one limit — an answer's time is the grant's database
time plus the seconds the host measured since it; on SQLite, which serves one host, the local clock.
"""

import contextlib
import json
import logging
import threading
import time
import weakref

from django.db import connections, transaction

from .errors import DeadlineExceeded
from .metrics import RATE_LIMIT_WAIT

# Customer.io's servers stamp arrivals with a clock of their own; a hair more than a second absorbs its rounding.
WINDOW_SECONDS = 1.01
# A grant whose answer never comes (its process was killed mid-request) stops counting as in flight after this long:
# longer than a request may take (Transport passes twice its connect + read timeouts, and more: DNS, connecting to
# each address, a CPU wait before sending are outside those timeouts).
DEFAULT_LONGEST_REQUEST_SECONDS = 30.0

logger = logging.getLogger(__name__)

_TABLE = "cio_ratelimitbucket"
_local = threading.local()
# Every side connection opened, so that close_side_connections() can end them all (test database teardown).
_side_connections: "weakref.WeakSet" = weakref.WeakSet()


class SharedRateLimiter:
    def __init__(
        self,
        name: str,
        rate: int,
        window: float = WINDOW_SECONDS,
        longest_request: float = DEFAULT_LONGEST_REQUEST_SECONDS,
    ):
        self.name = name
        self.rate = rate
        self.window = window
        self.longest_request = longest_request

    def acquire(self, deadline: float | None = None) -> float:
        """Wait until a request may be sent; return the seconds waited. Past `deadline` (a time.monotonic()
        value) raise DeadlineExceeded instead of waiting longer. Once the request's answer is in (or it failed),
        call finished()."""
        if not self.rate or self.rate <= 0:
            return 0.0
        started = time.monotonic()
        while True:
            wait = self._try_grant()
            if wait <= 0:
                return time.monotonic() - started
            if deadline is not None and time.monotonic() + wait > deadline:
                raise DeadlineExceeded(
                    f"Customer.io App API rate limit: no request slot before the deadline ({self.rate}/s)"
                )
            RATE_LIMIT_WAIT.inc(wait)
            time.sleep(wait)

    def finished(self, at: float) -> None:
        """Say that the request this thread was last granted has its answer (or its failure) since `at`, a
        time.monotonic() value: it reached Customer.io no later than that, and counts from then on."""
        grant, _local.grant = getattr(_local, "grant", None), None
        if grant is None or grant[0] != self.name:
            return
        _, stamp, stamped_at = grant
        answered = stamp + max(0.0, at - stamped_at)
        try:
            self._in_transaction(lambda cursor, lock, database_clock: self._finish(cursor, lock, stamp, answered))
        except Exception:  # the database went away meanwhile: the grant ages out as a request that never answered
            logger.debug("Could not record an App API request's answer", exc_info=True)

    def _try_grant(self) -> float:
        """Take a slot now and return 0, or return how long until one frees up."""
        return self._in_transaction(self._grant_with_cursor)

    def _in_transaction(self, work):
        """`work(cursor, lock_clause, database_clock)` in a transaction on the limiter's connection."""
        connection = connections["default"]
        if connection.vendor == "postgresql":
            return self._in_postgresql_transaction(connection, work)
        with transaction.atomic(), connection.cursor() as cursor:
            return work(cursor, "", False)

    def _counted_at(self, request: list, now: float) -> float:
        """When a stored request counts as having reached Customer.io: its answer's time, or now while in flight."""
        granted, answered = request
        if answered is not None:
            return answered
        return min(now, granted + self.longest_request)

    def _grant_with_cursor(self, cursor, lock_clause: str, database_clock: bool) -> float:
        cursor.execute(
            f"INSERT INTO {_TABLE} (name, stamps) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",  # noqa: S608
            [self.name, "[]"],
        )
        cursor.execute(f"SELECT stamps FROM {_TABLE} WHERE name = %s {lock_clause}", [self.name])  # noqa: S608
        requests = json.loads(cursor.fetchone()[0])
        stamped_at = time.monotonic()  # a moment before the time is read: finished() measures from here
        if database_clock:
            # Read after the row lock is held (a separate statement: in the locking SELECT itself the clock could be
            # read before the wait for the lock), so grants are stamped in the order they are made.
            cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
            now = float(cursor.fetchone()[0])
        else:
            now = time.time()
        counted = [(self._counted_at(request, now), request) for request in requests]
        recent = [(counted_at, request) for counted_at, request in counted if counted_at > now - self.window]
        if len(recent) >= self.rate:
            # The tenth-latest frees its slot a window after it counts; while it is in flight that is at least a
            # window from now, so waiting that long and looking again is never early.
            return sorted(counted_at for counted_at, _ in recent)[-self.rate] + self.window - now
        kept = [request for _, request in recent] + [[now, None]]
        cursor.execute(f"UPDATE {_TABLE} SET stamps = %s WHERE name = %s", [json.dumps(kept), self.name])  # noqa: S608
        _local.grant = (self.name, now, stamped_at)
        return 0.0

    def _finish(self, cursor, lock_clause: str, granted: float, answered: float) -> None:
        cursor.execute(f"SELECT stamps FROM {_TABLE} WHERE name = %s {lock_clause}", [self.name])  # noqa: S608
        row = cursor.fetchone()
        requests = json.loads(row[0]) if row else []
        for request in requests:
            if request[0] == granted and request[1] is None:
                request[1] = answered
                cursor.execute(
                    f"UPDATE {_TABLE} SET stamps = %s WHERE name = %s",  # noqa: S608
                    [json.dumps(requests), self.name],
                )
                return

    def _in_postgresql_transaction(self, connection, work):
        # psycopg's errors become Django's (OperationalError when the database is unreachable), as from any query:
        # callers tell an outage from a defect the same way whichever connection met it. No database, no slot: the
        # limit holds across every host because nothing is sent without the database's word.
        with connection.wrap_database_errors:
            for attempt in (1, 2):
                side_connection, kept = _postgresql_side_connection(connection.settings_dict)
                try:
                    with side_connection.transaction(), side_connection.cursor() as cursor:
                        return work(cursor, "FOR UPDATE", True)
                except Exception as error:
                    _drop_side_connection()
                    # A kept connection the database closed (a restart, a failover) is replaced once, as Django's
                    # CONN_HEALTH_CHECKS does for its own: a restart that is over costs no failed request.
                    if not (kept and attempt == 1 and _connection_lost(error)):
                        raise
        raise AssertionError("unreachable")


_LIBPQ_OPTIONS = {
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "options",
    "application_name",
    "target_session_attrs",
    "passfile",
    "service",
}


def _postgresql_side_connection(settings_dict):
    import psycopg

    key = (settings_dict.get("HOST"), settings_dict.get("PORT"), settings_dict["NAME"], settings_dict.get("USER"))
    cached = getattr(_local, "side_connection", None)
    if cached is not None and cached[0] == key and not cached[1].closed:
        return cached[1], True
    _drop_side_connection()
    side_connection = psycopg.connect(
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
        dbname=settings_dict["NAME"],
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        autocommit=True,
        # Only libpq connection options: Django-only ones (pool, isolation_level, ...) would break the connect.
        **{key: value for key, value in (settings_dict.get("OPTIONS") or {}).items() if key in _LIBPQ_OPTIONS},
    )
    _local.side_connection = (key, side_connection)
    _side_connections.add(side_connection)
    return side_connection, False


def _connection_lost(error: Exception) -> bool:
    import psycopg

    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def close_side_connections() -> None:
    """Close the limiter's own PostgreSQL connections in every thread."""
    for side_connection in list(_side_connections):
        with contextlib.suppress(Exception):
            side_connection.close()


def _drop_side_connection():
    cached = getattr(_local, "side_connection", None)
    _local.side_connection = None
    if cached is not None:
        with contextlib.suppress(Exception):  # already broken; nothing more to do
            cached[1].close()
