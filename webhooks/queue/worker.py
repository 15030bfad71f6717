"""The background worker's loop, its sign of life, and how it rides out the database going away.

The heartbeat must say "this worker is taking and finishing tasks", not merely "its process exists": a worker stuck
inside one task (a hung call, a lock that never comes) must stop beating so that /healthz shows the heartbeat
ageing. So the loop notes its own progress — each idle pass, each task taken, each task finished, and inside a task
each delivery outcome written — and the heartbeat is written only while that progress is recent.

django-tasks-db's loop ends on any database error but a locked SQLite file: after a restart the worker would exit
("couldn't get a connection after …"), its claimed deliveries left `processing` until their lease ran out. Here
the loop is resumed instead: the worker says once that the database is gone, waits for it (backing off up to
DATABASE_WAIT_MAX_SECONDS between tries), releases what the cut-off task still held (leases.release_abandoned),
marks that task failed, says once that the database is back, and takes tasks again.
"""

import logging
import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from ..deliveries import last_recorded_at
from ..health import record_heartbeat
from ..outages import database_unavailable, outage
from .leases import release_abandoned

logger = logging.getLogger("webhooks.worker")


class ProgressWorker(Worker):
    """django-tasks-db's worker loop, noting when it last made progress (time.monotonic())."""

    def __init__(self, **options):
        self.last_progress = time.monotonic()
        self.task_started = None  # monotonic time the current task was taken, while one runs
        self.cut_off: DBTaskResult | None = None  # a task whose end could not be recorded (the database went away)
        super().__init__(**options)

    def run(self) -> None:
        while True:
            try:
                return super().run()
            except Exception as error:
                if not database_unavailable(error):
                    raise
                self.startup_delay = False  # resuming, not starting: no thundering-herd pause
                ride_out(error, self._tidy_after_outage, self._waiting)
                if not self.running:
                    return

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
        self.cut_off = db_task_result
        try:
            super().run_task(db_task_result)
            self.cut_off = None  # its end is recorded (successful, or failed)
        finally:
            self.last_progress, self.task_started = time.monotonic(), None

    def _waiting(self) -> bool:
        """While the worker waits for the database: whether to keep waiting (not stopping). Waiting counts as
        progress: the worker is not stuck in a task, and its heartbeat resumes with the database."""
        self.last_progress = time.monotonic()
        return self.running

    def _tidy_after_outage(self, error: Exception) -> None:
        """The database is back: release what the cut-off task still held and mark the task failed (raises if the
        database fails again meanwhile: ride_out waits again)."""
        release_abandoned()
        cut_off = self.cut_off
        if cut_off is not None:
            DBTaskResult.objects.filter(pk=cut_off.pk, status=TaskResultStatus.RUNNING).update(
                status=TaskResultStatus.FAILED,
                finished_at=timezone.now(),
                exception_class_path=f"{type(error).__module__}.{type(error).__qualname__}",
                traceback=f"The database went away while this task ran ({type(error).__name__}); the deliveries it "
                "still held were queued again.",
            )
            self.cut_off = None

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


# Longest wait between two tries to reach the database while it is gone.
DATABASE_WAIT_MAX_SECONDS = 5.0


def wait_for_database(keep_waiting: Callable[[], bool] = lambda: True) -> None:
    """Return once the database answers a query (or once keep_waiting() says stop). Each try waits at most for a
    pooled connection (DATABASE_POOL_TIMEOUT) or a connect (DATABASE_CONNECT_TIMEOUT); tries back off from 0.5 s to
    DATABASE_WAIT_MAX_SECONDS. The outage is logged by its first error, not here."""
    delay = 0.5
    while keep_waiting():
        close_old_connections()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        except Exception as error:
            if not database_unavailable(error):
                raise
            outage.met(error)
            connection.close()
        time.sleep(delay)
        delay = min(delay * 2, DATABASE_WAIT_MAX_SECONDS)


def ride_out(error: Exception, then: Callable[[Exception], object], keep_waiting: Callable[[], bool] = lambda: True):
    """The database failed with `error`: wait until it answers, then run `then(error)`; should the database fail
    again meanwhile, wait again."""
    outage.met(error)
    while keep_waiting():
        wait_for_database(keep_waiting)
        if not keep_waiting():
            return None
        try:
            return then(error)
        except Exception as again:
            if not database_unavailable(again):
                raise
            outage.met(again)
    return None
