"""Password hashing on every core.

Django's default hasher (PBKDF2, 1,000,000 iterations) takes a quarter of a second or more per password and holds
the GIL, so a backfill that returns thousands of generated passwords hashes them in worker processes — Django's own
make_password, in processes that set Django up themselves (spawned, not forked: the parent has threads and database
connections that must not be copied).
"""

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor

from django.conf import settings
from django.contrib.auth.hashers import get_hasher


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_worker(settings_module: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()


def _hash(password: str, algorithm: str) -> str:
    from django.contrib.auth.hashers import make_password

    return make_password(password, hasher=algorithm)


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

    def hash_all(self, passwords: list[str]) -> list[str]:
        futures = [self.submit(password) for password in passwords]
        return [future.result() for future in futures]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
