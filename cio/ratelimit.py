"""A rate limiter shared by every process that uses the database.

Customer.io's App API allows 10 requests per second per workspace. Web processes and background workers share
one budget, so the limiter's state lives in the database: a row holding the grant times of the last `rate`
requests. A request may go when the oldest of them is more than one window old.

On PostgreSQL the limiter uses its own autocommit connection: a caller may hold a long transaction (the
per-contact lock while Customer.io answers), and a row lock taken inside it would stall every other process
until that transaction ends. On SQLite there is one writer at a time anyway, so the limiter writes through
Django's connection (inside the caller's transaction when there is one).

Without the database there is no grant: a request waiting for a slot fails with Django's OperationalError (the
webhook answers 503, the queue retries), so hosts that lost the database send nothing rather than each guessing its
share. Redis plays no part, so its outages change nothing here.

Grant times are read from one clock for everyone: on PostgreSQL the database's (`clock_timestamp()`, read once the
row is locked), so that worker hosts whose clocks disagree still share one limit; on SQLite, which serves one host,
the local clock.
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

# Requests reach Customer.io a little after they are granted, and not always with the same delay; a grant window
# slightly longer than a second keeps the arrivals themselves within the rate. A request that leaves much later than
# its grant has its stamp moved (SharedRateLimiter.sent).
WINDOW_SECONDS = 1.0
ARRIVAL_MARGIN_SECONDS = 0.07
RESTAMP_AFTER_SECONDS = 0.01

logger = logging.getLogger(__name__)

_TABLE = "cio_ratelimitbucket"
_local = threading.local()
# Every side connection opened, so that close_side_connections() can end them all (test database teardown).
_side_connections: "weakref.WeakSet" = weakref.WeakSet()


class SharedRateLimiter:
    def __init__(self, name: str, rate: int, window: float = WINDOW_SECONDS + ARRIVAL_MARGIN_SECONDS):
        self.name = name
        self.rate = rate
        self.window = window

    def acquire(self, deadline: float | None = None) -> float:
        """Wait until a request may be sent; return the seconds waited. Past `deadline` (a time.monotonic()
        value) raise DeadlineExceeded instead of waiting longer."""
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

    def sent(self, at: float) -> None:
        """Say when the request this thread was last granted was handed to the network (a time.monotonic() value).

        A grant is stamped when it is made; its request leaves a moment later — usually a millisecond, but on a host
        whose CPUs are busy a thread may wait a tenth of a second for its turn in between. A request granted late in
        one window and sent late would then reach Customer.io less than a second before the tenth request after it,
        sent on time. So a request that left more than RESTAMP_AFTER_SECONDS after its grant has its stamp moved to
        when it left (called once the answer is in, so that the request itself never waits for this)."""
        grant, _local.grant = getattr(_local, "grant", None), None
        if grant is None or grant[0] != self.name:
            return
        _, stamp, stamped_at = grant
        late = at - stamped_at
        if late < RESTAMP_AFTER_SECONDS:
            return
        try:
            self._in_transaction(lambda cursor, lock, database_clock: self._restamp(cursor, lock, stamp, late))
        except Exception:  # best effort: the grant's own stamp stays
            logger.debug("Could not move a late request's stamp", exc_info=True)

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

    def _grant_with_cursor(self, cursor, lock_clause: str, database_clock: bool) -> float:
        cursor.execute(
            f"INSERT INTO {_TABLE} (name, stamps) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",  # noqa: S608
            [self.name, "[]"],
        )
        cursor.execute(f"SELECT stamps FROM {_TABLE} WHERE name = %s {lock_clause}", [self.name])  # noqa: S608
        stamps = json.loads(cursor.fetchone()[0])
        stamped_at = time.monotonic()  # a moment before the stamp is read: sent() measures the delay from here
        if database_clock:
            # Read after the row lock is held (a separate statement: in the locking SELECT itself the clock could be
            # read before the wait for the lock), so grants are stamped in the order they are made.
            cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
            now = float(cursor.fetchone()[0])
        else:
            now = time.time()
        recent = [stamp for stamp in stamps if stamp > now - self.window]
        if len(recent) >= self.rate:
            recent.sort()
            return recent[-self.rate] + self.window - now
        recent.append(now)
        cursor.execute(
            f"UPDATE {_TABLE} SET stamps = %s WHERE name = %s",  # noqa: S608
            [json.dumps(recent[-self.rate :]), self.name],
        )
        _local.grant = (self.name, now, stamped_at)
        return 0.0

    def _restamp(self, cursor, lock_clause: str, stamp: float, late: float) -> None:
        cursor.execute(f"SELECT stamps FROM {_TABLE} WHERE name = %s {lock_clause}", [self.name])  # noqa: S608
        row = cursor.fetchone()
        stamps = json.loads(row[0]) if row else []
        if stamp in stamps:  # not yet pushed out by newer grants
            stamps[stamps.index(stamp)] = stamp + late
            cursor.execute(
                f"UPDATE {_TABLE} SET stamps = %s WHERE name = %s",  # noqa: S608
                [json.dumps(stamps), self.name],
            )

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
