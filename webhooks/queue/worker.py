"""The background worker's loop and its sign of life.

The heartbeat must say "this worker is taking and finishing tasks", not merely "its process exists": a worker stuck
inside one task (a hung call, a lock that never comes) must stop beating so that /healthz shows the heartbeat
ageing. So the loop notes its own progress — each idle pass, each task taken, each task finished, and inside a task
each delivery outcome written — and the heartbeat is written only while that progress is recent.
"""

import logging
import time
from datetime import datetime

from django.conf import settings
from django_tasks_db.management.commands.db_worker import Worker

from ..deliveries import last_recorded_at
from ..health import record_heartbeat

logger = logging.getLogger("webhooks.worker")


class ProgressWorker(Worker):
    """django-tasks-db's worker loop, noting when it last made progress (time.monotonic())."""

    def __init__(self, **options):
        self.last_progress = time.monotonic()
        self.task_started = None  # monotonic time the current task was taken, while one runs
        super().__init__(**options)

    # The loop reads `interval` once per idle pass, right before it sleeps: that read is the idle loop's sign of
    # life (the library offers no hook; this keeps its loop as it is rather than copying it).
    @property
    def interval(self) -> float:
        self.last_progress = time.monotonic()
        return self._interval

    @interval.setter
    def interval(self, value: float) -> None:
        self._interval = value

    def run_task(self, db_task_result) -> None:
        self.last_progress = self.task_started = time.monotonic()
        try:
            super().run_task(db_task_result)
        finally:
            self.last_progress, self.task_started = time.monotonic(), None

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds since the loop last made progress beyond what a task may take (0: not stalled)."""
        now = time.monotonic() if now is None else now
        # Inside a long task (a batch of thousands of deliveries), each outcome written counts as progress too.
        progress = max(self.last_progress, last_recorded_at())
        return max(0.0, now - progress - settings.WEBHOOK_WORKER_STALL_SECONDS)


def beat(worker: ProgressWorker, worker_id: str, started_at: datetime) -> bool:
    """Write the worker's heartbeat if its loop is making progress. Returns whether it did."""
    stalled = worker.stalled_for()
    if stalled:
        logger.warning(
            "Worker %s made no progress for %.0f s (stuck in a task?): no heartbeat",
            worker_id,
            stalled + settings.WEBHOOK_WORKER_STALL_SECONDS,
        )
        return False
    record_heartbeat(worker_id, started_at)
    return True
