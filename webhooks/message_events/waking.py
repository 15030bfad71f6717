"""Waking the background worker for message events, without a task per event.

A web process checks for a waiting task at most once per WAKE_SECONDS (then one SELECT, and one INSERT when none
waits); the task, once running, takes events until a look WAKE_SECONDS after its last pass finds none
(webhooks.message_events.processing), so an event a process did not wake for is still taken. What slips between — an
event stored after a task's last look, in a process that woke less than WAKE_SECONDS before — the worker's sweep
finds within WEBHOOK_SWEEP_SECONDS (wake_if_due).
"""

import logging

from django.db import DatabaseError

from users.services.task_waking import AtMostEvery, wake_task

from ..models import MessageEvent
from ..tasks import process_message_events
from .processing import WAKE_SECONDS

logger = logging.getLogger(__name__)


def wake_worker() -> None:
    """Enqueue the task that processes message events, unless one already waits to run."""
    wake_task(process_message_events)


def _wake_logging_failure() -> None:
    try:
        wake_worker()
    except DatabaseError as error:
        logger.warning("Could not wake the worker for message events (its sweep will): %s", error)


# Make sure a task will process the events stored by now, looking at most once per WAKE_SECONDS in this process.
# Never raises: the event is stored, and the sweep wakes the worker if this could not.
wake_worker_soon = AtMostEvery(WAKE_SECONDS, _wake_logging_failure)


def wake_if_due() -> None:
    """For the worker's sweep (and its start): events waiting get a task."""
    if MessageEvent.objects.filter(processed_at__isnull=True).exists():
        wake_worker()


def forget() -> None:
    """The next wake_worker_soon() looks at once (tests)."""
    wake_worker_soon.forget()
