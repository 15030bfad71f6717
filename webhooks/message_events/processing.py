"""The worker's part of a message event: link it to a user, run the admin's reactions, send message_event_received.

A batch is taken with its rows locked (PostgreSQL: SKIP LOCKED, so several workers share the waiting events; SQLite:
the write lock), processed and marked in one transaction: a worker that dies leaves its batch waiting for the next
one, never half done. Each event's reactions run in a savepoint of their own, so one that fails — logged with its
traceback — neither undoes the others nor holds the batch back for ever. The signal goes out after the commit.

An event whose person has no user is marked processed without one and left waiting under its email (or Customer.io
id): webhooks.message_events.linking links it, and has it processed again, when such a user appears.
"""

import logging
import time

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from users.models import ActivityLog
from users.services.activity import log_activity

from ..models import MessageEvent
from ..signals import message_event_received
from . import people
from .reactions import Reactions, react

logger = logging.getLogger(__name__)

# Events taken at once: a transaction's worth (on SQLite it holds the write lock meanwhile).
BATCH_SIZE = 500
# A web process wakes the worker at most this often (webhooks.message_events.waking); the task looks once more this
# long after a pass that found nothing, so that the events of a process that did not wake it are taken too.
WAKE_SECONDS = 0.5


# One task spends at most about this long: the worker runs one task at a time, and journey deliveries share its
# queue. Events still waiting then get a task of their own, behind the deliveries already queued.
TASK_BUDGET_SECONDS = 2.0


def process_waiting() -> tuple[int, bool]:
    """Process waiting events until a pass WAKE_SECONDS after an empty one finds none, or the task's budget is
    spent. Returns how many, and whether events may still wait (the task then queues another for them)."""
    processed, looked_again, started = 0, False, time.monotonic()
    while True:
        done = process_batch()
        processed += done
        if done and time.monotonic() - started >= TASK_BUDGET_SECONDS:
            return processed, True
        if done:
            looked_again = False
            continue
        if looked_again:
            return processed, False
        time.sleep(WAKE_SECONDS)
        looked_again = True


def process_batch(limit: int = BATCH_SIZE) -> int:
    """One batch of waiting events, oldest first. Returns how many were processed."""
    reactions = Reactions.load()
    reactions.learn_tag_kinds()  # before the transaction: it may call Customer.io
    with transaction.atomic():
        waiting = MessageEvent.objects.filter(processed_at__isnull=True).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            waiting = waiting.select_for_update(skip_locked=True, of=("self",))
        events = list(waiting.select_related("user")[:limit])
        if not events:
            return 0
        now = timezone.now()
        found = people.users_of([event for event in events if event.user_id is None])
        for event in events:
            if event.user_id is None and event.pk in found:
                event.user = found[event.pk]
            event.unlinked_key = None if event.user_id else people.unlinked_key(event)
            event.processed_at = now
            if event.user_id is not None:
                _react_in_savepoint(event, reactions)
        MessageEvent.objects.bulk_update(events, ["user", "unlinked_key", "processed_at"])
        if message_event_received.has_listeners(MessageEvent):
            transaction.on_commit(lambda: _send_signals(events))
    return len(events)


def _react_in_savepoint(event: MessageEvent, reactions: Reactions) -> None:
    chosen = reactions.for_event(event)
    if not chosen:
        return
    try:
        with transaction.atomic():
            react(event, event.user, chosen)
    except OperationalError:
        raise  # a deadlock, a lost connection: the whole batch waits for the next task, nothing is lost
    except Exception as error:
        # A defect or a database error inside one event's reactions: the others, and the batch, go on.
        logger.exception("Reactions to message event %s failed", event.event_id)
        log_activity(
            ActivityLog.Source.CUSTOMERIO,
            f"Reactions to the {event.channel} {event.metric} event {event.event_id} for {event.user.email} failed: "
            f"{type(error).__name__}: {error}",
            level=ActivityLog.Level.ERROR,
            user=event.user,
            context={"event_id": event.event_id},
        )


def _send_signals(events: list[MessageEvent]) -> None:
    for event in events:
        for receiver, outcome in message_event_received.send_robust(sender=MessageEvent, event=event, user=event.user):
            if isinstance(outcome, Exception):
                logger.error("Signal receiver %r failed: %s", receiver, outcome, exc_info=outcome)
