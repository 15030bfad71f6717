import logging
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection
from django.utils import timezone
from django.utils.crypto import get_random_string

from users.services import outbox, segment_changes
from webhooks import cio_calls
from webhooks.health import record_heartbeat
from webhooks.message_events import waking as message_events
from webhooks.metrics import files as metrics_files
from webhooks.outages import database_unavailable, outage
from webhooks.queue import recovery
from webhooks.queue.leases import try_releasing_abandoned
from webhooks.queue.task_rows import PROCESS_DELIVERY
from webhooks.queue.worker import ProgressWorker, beat, ride_out, wait_for_database

logger = logging.getLogger("webhooks.worker")


class Command(BaseCommand):
    help = (
        "Process queued webhook deliveries: runs the django-tasks-db worker loop (no auto-reload) and, every few "
        "seconds, the sweep that recovers deliveries whose worker died. Run one or more per host."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls when idle")
        parser.add_argument("--worker-id", default="", help="unique across the pool (default: random)")
        parser.add_argument("--batch", action="store_true", help="process what is waiting, then exit")

    def handle(self, *args, interval, worker_id, batch, **options):
        worker_id = worker_id or f"webhook-{get_random_string(12)}"
        worker = ProgressWorker(
            queue_names=[PROCESS_DELIVERY.queue_name],
            interval=interval,
            batch=batch,
            backend_name=PROCESS_DELIVERY.backend,
            startup_delay=not batch,
            max_tasks=None,
            worker_id=worker_id,
            excluded_queue_names=[],
        )
        stop_sweeping = threading.Event()
        started_at = timezone.now()
        sweeper = threading.Thread(
            target=self._sweep_forever, args=(stop_sweeping, worker, worker_id, started_at), daemon=True, name="sweep"
        )
        outage.meanwhile = f"worker {worker_id} waits for it, then carries on"  # webhooks.outages' line
        metrics_dir = metrics_files.directory()
        if metrics_dir:  # earlier processes' metric files join the archive (webhooks.metrics.files)
            metrics_files.fold_ended_processes(metrics_dir)
        # A worker started while the database is away (a restart of both) waits for it rather than exiting.
        wait_for_database()
        try:
            self._start_up(worker_id, started_at)
        except Exception as error:
            if not database_unavailable(error):
                raise
            ride_out(error, lambda _error: self._start_up(worker_id, started_at))
        if not batch:
            sweeper.start()
        logger.info("Webhook worker %s started", worker_id)  # a log line, so that LOG_FORMAT applies to it too
        worker.configure_signals()
        try:
            worker.run()
        finally:
            stop_sweeping.set()

    @staticmethod
    def _start_up(worker_id: str, started_at) -> None:
        record_heartbeat(worker_id, started_at)
        recovery.sweep()
        segment_changes.wake_if_due()
        outbox.wake_if_due()
        message_events.wake_if_due()

    @staticmethod
    def _sweep_forever(stopped: threading.Event, worker: ProgressWorker, worker_id: str, started_at):
        try:
            while not stopped.wait(settings.WEBHOOK_SWEEP_SECONDS):
                try:
                    close_old_connections()  # a long-lived thread: drop a connection the database closed
                    # Written here, every few seconds, but only while the worker loop is making progress.
                    beat(worker, worker_id, started_at)
                    recovery.sweep()
                    segment_changes.wake_if_due()  # tag changes for Customer.io whose retry is due
                    outbox.wake_if_due()  # profile changes, events and login links likewise
                    message_events.wake_if_due()  # message events no web process woke the worker for
                    cio_calls.flush_if_due()  # this process's Customer.io call counts, once a minute
                    try_releasing_abandoned()  # a processing cut off by the database, if the loop has not yet
                except Exception as error:
                    if database_unavailable(error):
                        outage.met(error)  # one line for the outage, not a traceback every few seconds
                    else:
                        logger.exception("Delivery recovery sweep failed; trying again later")
                finally:
                    close_old_connections()  # with the pool: give the connection back between rounds
        finally:
            connection.close()
