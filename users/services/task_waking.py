"""Waking the background worker for an outbox or a queue of rows, without a task per row: one home for the rule the
tag changes, the profile outbox and the message events share."""

import threading
import time

from django_tasks_db.models import DBTaskResult


def wake_task(task) -> None:
    """Enqueue `task` unless one already waits to run (2,500 changes in a burst make one task, not 2,500). A task
    already running does not count: rows committed after its last look need the next one."""
    if not DBTaskResult.objects.ready().filter(task_path=task.module_path).exists():
        task.enqueue()


class AtMostEvery:
    """Calls `wake` at most once per `seconds` in this process, so that a burst of requests costs one look for a
    waiting task, not one each. What slips between (a row committed after the running task's last look, in a process
    that looked less than `seconds` ago) the worker's sweep finds."""

    def __init__(self, seconds: float, wake):
        self.seconds, self.wake = seconds, wake
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.seconds:
                return
            self._last = now
        self.wake()

    def forget(self) -> None:
        """The next call looks at once (tests)."""
        with self._lock:
            self._last = 0.0
