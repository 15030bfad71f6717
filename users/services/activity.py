import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from settings_app.redaction import redact, scrub

from ..models import ActivityLog, User

logger = logging.getLogger("users.activity")

_PYTHON_LEVELS = {
    ActivityLog.Level.INFO: logging.INFO,
    ActivityLog.Level.NOTICE: logging.INFO,
    ActivityLog.Level.WARNING: logging.WARNING,
    ActivityLog.Level.ERROR: logging.ERROR,
}

BULK_BATCH_SIZE = 500

# The webhook delivery being processed, so that every line written meanwhile — by the account rules, the welcome
# email, a signal receiver — names it without each caller passing it down. A context variable, not a thread-local:
# it follows the processing and nothing else.
_current_delivery_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("activity_delivery_id", default=None)


@contextlib.contextmanager
def lines_for_delivery(delivery_id: int | None) -> Iterator[None]:
    """Activity lines written inside this block carry `delivery_id`."""
    token = _current_delivery_id.set(delivery_id)
    try:
        yield
    finally:
        _current_delivery_id.reset(token)


@dataclass
class Activity:
    """One activity log line, for writing many at once."""

    message: str
    level: str = ActivityLog.Level.INFO
    user: User | None = None
    context: dict | None = None
    user_id: int | None = None  # instead of `user`, when the user is not loaded
    delivery_id: int | None = None  # the webhook delivery it is about, when not the one being processed


def log_activity(
    source, message, *, level=ActivityLog.Level.INFO, user=None, context=None, delivery_id=None
) -> ActivityLog:
    """Record a line in the admin's activity log and in Python logging. Context is redacted first; callers must
    still never put a secret in `message`. `delivery_id`: the webhook delivery it is about, when written outside
    that delivery's processing (see lines_for_delivery)."""
    message = scrub(message)  # should a link or a key be quoted after all, the admin never shows it
    entry = ActivityLog.objects.create(
        source=source,
        level=level,
        message=message,
        user=user,
        context=redact(context or {}),
        delivery_id=delivery_id if delivery_id is not None else _current_delivery_id.get(),
    )
    logger.log(_PYTHON_LEVELS[level], "[%s] %s", source, message)
    return entry


def log_activities(source, activities: Iterable[Activity]) -> int:
    """Record many lines with a few INSERTs (backfills write one per changed user). Routine lines go to Python
    logging at DEBUG only, so that a backfill of thousands of users does not flood the console; notices and
    worse keep their level."""
    delivery_id = _current_delivery_id.get()
    rows = []
    for activity in activities:
        rows.append(
            ActivityLog(
                source=source,
                level=activity.level,
                message=scrub(activity.message),
                user_id=activity.user.pk if activity.user is not None else activity.user_id,
                context=redact(activity.context or {}),
                delivery_id=activity.delivery_id if activity.delivery_id is not None else delivery_id,
            )
        )
        routine = activity.level == ActivityLog.Level.INFO
        logger.log(logging.DEBUG if routine else _PYTHON_LEVELS[activity.level], "[%s] %s", source, activity.message)
    ActivityLog.objects.bulk_create(rows, batch_size=BULK_BATCH_SIZE)
    return len(rows)
