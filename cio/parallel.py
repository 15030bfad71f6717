"""Customer.io calls made side by side, so that a webhook's reads of one person (attributes and segments) cost one
round trip instead of two — Customer.io gives a synchronous webhook 4 seconds, and its App API can take more than
one per call.

Each call runs on its own thread and builds its client there (get_client() keeps one per thread: a requests.Session
is not shared across threads). The rate limiter needs nothing more: its state lives in the database, and each
thread reaches it through a connection of its own. Each call keeps the deadline it was given.
"""

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection, connections
from django.views.decorators.debug import sensitive_variables

# Reads of one person are two calls; a few web threads may read at once.
_THREADS = 8
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def call_together(*calls):
    """Run the calls (functions taking no argument) at once and return their results in order. The first failure,
    in order, is raised once every call has finished."""
    if len(calls) < 2 or not _may_run_elsewhere():
        return [call() for call in calls]
    # Each call runs in a copy of the caller's context, so that what it logs carries the caller's request and
    # delivery ids (context variables do not follow a task into a pool thread by themselves).
    futures = [_pool().submit(contextvars.copy_context().run, _on_pool_thread, call) for call in calls[1:]]
    outcomes = [_outcome(calls[0])]
    for future in futures:
        try:
            outcomes.append((future.result(), None))
        except BaseException as exc:  # noqa: BLE001 — handed back to the caller below
            outcomes.append((None, exc))
    for _, error in outcomes:
        if error is not None:
            raise error
    return [result for result, _ in outcomes]


def _may_run_elsewhere() -> bool:
    """On SQLite the limiter writes through Django's connection: inside a transaction (which holds SQLite's one
    write lock) another thread could not take a request slot until it ends, so the calls then run in turn."""
    return connection.vendor != "sqlite" or not connection.in_atomic_block


def _outcome(call):
    try:
        return call(), None
    except BaseException as exc:  # noqa: BLE001 — handed back to the caller
        return None, exc


# Error reports walk this thread's frames too: the call's closure holds request headers and bodies.
@sensitive_variables()
def _on_pool_thread(call):
    try:
        return call()
    finally:
        # The limiter's SQLite connection of this thread: not kept open between calls.
        connections.close_all()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="cio-call")
        return _executor
