"""Customer.io reads made on a thread ahead of the backfill that uses them.

A backfill's App API reads are paced by the rate limit (10 a second): done in turn with its database work, each read
waits for the writing of the previous one, and the writing for the read. Here the reads run on a thread a few items
ahead, so the writing happens while the thread waits for Customer.io, and a run takes about as long as its calls at
the limit. The thread reads only Customer.io (with a client of its own: get_client() keeps one per thread); the
database stays with the caller, so what the caller's transaction holds never has to be seen from the thread.
"""

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator

from django.db import connection, connections

# How long the reader waits for room in the queue before looking whether the consumer gave up.
_PUT_POLL_SECONDS = 0.5
_DONE = object()


def may_read_ahead() -> bool:
    """On SQLite the rate limiter takes its request slots through the thread's own connection, which must write:
    while this connection is inside a transaction (it holds SQLite's one write lock; a test's transaction, say) the
    thread could not, so the reads are then made in turn."""
    return connection.vendor != "sqlite" or not connection.in_atomic_block


def read_ahead(produce: Callable[[], Iterator], depth: int) -> Iterator:
    """The items of produce(), made on a thread up to `depth` items ahead of the caller. An exception of the reader
    is raised to the caller when it gets there; a caller that stops early (an exception, Ctrl-C, a --limit) stops
    the reader after the item it is making."""
    if not may_read_ahead():
        yield from produce()
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_PUT_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 — handed to the caller
            put((None, exc))
        finally:
            # The rate limiter's SQLite connection of this thread.
            connections.close_all()

    reader = threading.Thread(
        target=contextvars.copy_context().run, args=(run,), name="backfill-read-ahead", daemon=True
    )
    reader.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
