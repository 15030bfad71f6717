"""The database going away and coming back — a restart, a failover, a network cut: how a process tells, what it
answers meanwhile, and the one log line each way.

An unavailable database shows as Django's OperationalError or InterfaceError: a connection refused or timed out
(`DATABASE_CONNECT_TIMEOUT`), one the server ended, or the pool's "couldn't get a connection" after
`DATABASE_POOL_TIMEOUT`. (The rate limiter's own connection raises the same: cio.ratelimit translates psycopg's.) Then
webhooks answer 503 with Retry-After, which Customer.io retries (webhooks.intake.exceptions); other pages answer a
503 page (`server_error`, Django's handler500); /healthz answers 503; workers wait and carry on
(webhooks.queue.worker).

Each process writes one WARNING when it first meets the outage and one when a new connection to the database is
made again (Django's connection_created signal: with the pool, every connection a request or a worker takes out),
never one per request or poll. After a restart, connections the server ended keep failing for a moment, one per
thread, while new ones already work: an outage met within SETTLING_SECONDS of the last one's end writes nothing.

With the pool, two things change while the process knows the database is away:
- A request waits OUTAGE_POOL_TIMEOUT for a connection rather than DATABASE_POOL_TIMEOUT (the pool's `timeout`,
  which it reads at each request for a connection): each waiting request holds one of gunicorn's threads, and at
  3 s each a burst of webhooks would queue behind them past Customer.io's 4 s. The pool keeps trying to reconnect
  in the background, and the first request after it succeeds takes that connection and ends the outage.
- The pool's idle connections are checked together once (psycopg_pool's ConnectionPool.check(), in a thread of its
  own).

The same check runs, in the requesting thread, as soon as the pool finds one dead connection, outage or not. After
a restart every pooled connection is dead, and the pool, checking them one at a time as they are handed out, sleeps
a growing backoff (1 s, 2 s, …) before trying the next: left alone, a request after a restart that took only a
second could wait 3 s for nothing and answer 503 — how requests came to wait 11 s with a 10 s pool timeout. The
pool's per-connection check (Django gives it psycopg_pool's check_connection when CONN_HEALTH_CHECKS is on, and
offers no way to pass another) is wrapped once the pool exists: see `watch_pool`.
"""

import logging
import sys
import threading
import time

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.http import HttpResponse
from django.views import defaults

logger = logging.getLogger(__name__)

# Seconds a 503 asks the caller to wait before trying again.
RETRY_AFTER_SECONDS = 5
# Seconds a request waits for a pooled connection while the process knows the database is away.
OUTAGE_POOL_TIMEOUT = 0.5
# An outage met this soon after the last one ended is the same one's tail: it writes no lines of its own.
SETTLING_SECONDS = 10.0


def database_unavailable(error: BaseException | None) -> bool:
    """Whether `error` says the database cannot be reached now (rather than that a query is wrong)."""
    return isinstance(error, OperationalError | InterfaceError)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""


class DatabaseOutage:
    """This process's view of the database: reachable, or not since when."""

    def __init__(self):
        self._since: float | None = None  # time.monotonic()
        self._lock = threading.Lock()
        self._back_at = float("-inf")  # when the last outage's "back" line was written
        self._quiet = False  # this outage follows the last one closely: no lines for it
        # What this process does meanwhile, for the log line (the worker says its own).
        self.meanwhile = "webhooks and pages answer 503 until it answers again"

    @property
    def down(self) -> bool:
        return self._since is not None

    def forget(self) -> None:
        """Back to a process that never met an outage (tests)."""
        self.over()
        with self._lock:
            self._back_at, self._quiet = float("-inf"), False

    def met(self, error: BaseException) -> None:
        """The database failed to answer: say so, once per outage."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
            # After a restart, connections the server ended keep failing for a moment, one per thread, while new
            # ones already work: one outage for the log, not a line each way per thread.
            self._quiet = self._since - self._back_at < SETTLING_SECONDS
        pool = _pool()
        if pool is not None:
            pool.timeout = min(pool.timeout, OUTAGE_POOL_TIMEOUT)
            _check_connections(pool)
        if self._quiet:
            return
        logger.warning(
            "The database is unavailable (%s: %s): %s",
            type(error).__name__,
            _first_line(error),
            self.meanwhile,
        )

    def over(self) -> None:
        """The database answered again: say so, once."""
        if self._since is None:  # the usual case, on every new connection: no lock
            return
        with self._lock:
            since, self._since = self._since, None
            if since is None:
                return
            quiet, self._back_at = self._quiet, time.monotonic()
        pool = _pool()
        if pool is not None:
            pool.timeout = connections["default"].settings_dict["OPTIONS"]["pool"]["timeout"]
        if not quiet:
            logger.warning("The database is back after %.1f s", time.monotonic() - since)


outage = DatabaseOutage()


def connection_made(sender, connection, **kwargs) -> None:
    """connection_created receiver (connected in WebhooksConfig.ready)."""
    outage.over()
    if connection.alias == DEFAULT_DB_ALIAS:
        watch_pool(connection)


def watch_pool(connection) -> None:
    """Wrap the pool's check of a connection it hands out, so that one found dead has the others checked at once.

    `_check` is psycopg_pool's own attribute for the `check` argument (Django passes ConnectionPool.check_connection
    and takes no other): replaced only while it holds that function, so a psycopg_pool that changes it leaves the
    pool as it was (tests/outages/test_answers.py notices)."""
    # The pool this connection came from: asking connections["default"] instead would create one, with whatever
    # database settings hold at that moment (the test runner switches them after connecting elsewhere).
    pool = getattr(connection, "pool", None)
    if pool is None or getattr(pool, "_check", None) is not _pool_check():
        return  # no pool, already wrapped, or a psycopg_pool that changed

    def check_connection(conn) -> None:
        try:
            _pool_check()(conn)
        except Exception:
            # Here, before the pool's next try: checked from a thread of their own, the others could still be in the
            # pool when it takes the next one, and a second dead one costs the backoff's first second.
            if _checking.acquire(timeout=1.0):
                try:
                    pool.check()
                except Exception:  # a pool closed meanwhile (tests, shutdown): nothing to check
                    logger.debug("Checking the pool's connections failed", exc_info=True)
                finally:
                    _checking.release()
            raise

    pool._check = check_connection


def _pool_check():
    from psycopg_pool import ConnectionPool

    return ConnectionPool.check_connection


def _pool():
    """The process's psycopg pool (None without one: SQLite, or DATABASE_POOL off)."""
    return getattr(connections["default"], "pool", None)


_checking = threading.Lock()  # held while a thread checks the pool's connections: one such thread at a time


def _check_connections(pool) -> None:
    if not _checking.acquire(blocking=False):
        return  # being checked now

    def check():
        try:
            pool.check()
        except Exception:  # a pool closed meanwhile (tests, shutdown): nothing to check
            logger.debug("Checking the pool's connections failed", exc_info=True)
        finally:
            _checking.release()

    threading.Thread(target=check, name="pool-check", daemon=True).start()


def server_error(request):
    """Django's handler500: a 503 page when the database is unavailable (the request may simply be tried again),
    else Django's own 500 page. Called inside the `except` block of the request's failure."""
    error = sys.exc_info()[1]
    if not database_unavailable(error):
        return defaults.server_error(request)
    outage.met(error)
    response = HttpResponse(
        "<!doctype html><title>Unavailable for a moment</title><h1>Unavailable for a moment</h1>"
        "<p>The site cannot reach its database just now. Try again in a few seconds.</p>",
        status=503,
        content_type="text/html; charset=utf-8",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
    response._has_been_logged = True  # the outage's one line says it: not an ERROR with a traceback per request
    return response
