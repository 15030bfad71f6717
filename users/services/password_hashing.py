"""Password hashing off the caller's path: generated passwords are never hashed under a contact's lock or inside a
transaction. (A password mapped from Customer.io's attributes is known only after the reads, which on PostgreSQL are
made under the contact's lock: it is hashed there, holding up only that person's deliveries.)

A hash costs tens of milliseconds (Argon2 as sized here) to a second (PBKDF2's million iterations). Held inside a
transaction it stalls every other writer on SQLite; held under a contact's lock, every delivery for that person.

- PasswordHashPool: make_password in worker processes, one per core, for callers that hash many passwords (the
  import backfill, the queue draining a burst of `add`s). Processes set Django up themselves (spawned, not forked: the
  parent has threads and database connections that must not be copied).
- hash_on_thread: one password hashed on a thread while the caller waits for Customer.io (a synchronous webhook).
  The hashers' C code (argon2-cffi, OpenSSL's PBKDF2) releases the GIL, so the hash runs beside the caller's work.
- HashedAhead: a generated password and its hash under way, handed to the account rules to use if they create a
  user with a generated password (and to drop otherwise).
"""

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.hashers import get_hasher
from django.views.decorators.debug import sensitive_variables


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# How much a pool process yields the CPU (os.nice): a burst of adds hashes on every core for as long as it lasts, and
# the web processes on the same host must still accept webhooks at once (Customer.io waits 4 s; measured, hashing
# at normal priority took the accept's p99 from 10 ms to 50 ms in bench/accept.py's open loop). An idle machine
# still gives the pool all its cores.
POOL_NICENESS = 10


def _start_worker(settings_module: str) -> None:
    if hasattr(os, "nice"):
        os.nice(POOL_NICENESS)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()


@sensitive_variables("password")  # an error report of a failed hash must not show it
def _hash(password: str, algorithm: str) -> str:
    from django.contrib.auth.hashers import make_password

    return make_password(password, hasher=algorithm)


@dataclass(frozen=True)
class HashedAhead:
    """A password with its hash being computed elsewhere (a thread or a pool process)."""

    password: str = field(repr=False)  # never in a log line or error report that shows the object
    hashed: Future
    generated: bool = False  # made up here (owed to Customer.io's Return Password field), not mapped from it

    def encoded(self) -> str:
        return self.hashed.result()


_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def hash_on_thread(password: str, *, generated: bool = False) -> HashedAhead:
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="password-hash")
    return HashedAhead(password, _threads.submit(_hash, password, get_hasher("default").algorithm), generated)


class PasswordHashPool:
    """make_password in one worker process per usable core, started at the first submit."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or usable_cores()
        # The worker uses the parent's default hasher, by name, so that both sides agree on it.
        self.algorithm = get_hasher("default").algorithm
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, password: str) -> Future:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                # Overridden settings (tests) have no module name; the process's own then.
                initargs=(settings.SETTINGS_MODULE or os.environ["DJANGO_SETTINGS_MODULE"],),
            )
        return self._executor.submit(_hash, password, self.algorithm)

    def hash_ahead(self, password: str, *, generated: bool = False) -> HashedAhead:
        return HashedAhead(password, self.submit(password), generated)

    def hash_all(self, passwords: list[str]) -> list[str]:
        futures = [self.submit(password) for password in passwords]
        return [future.result() for future in futures]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


_shared_pool: PasswordHashPool | None = None


def shared_pool() -> PasswordHashPool:
    """One pool per process for long-lived processes (the webhook worker), started at its first use."""
    global _shared_pool
    with _threads_lock:
        if _shared_pool is None:
            _shared_pool = PasswordHashPool()
        return _shared_pool
