import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..models import ActivityLog, User
from ..redaction import redact

logger = logging.getLogger("users.activity")

_PYTHON_LEVELS = {
    ActivityLog.Level.INFO: logging.INFO,
    ActivityLog.Level.NOTICE: logging.INFO,
    ActivityLog.Level.WARNING: logging.WARNING,
    ActivityLog.Level.ERROR: logging.ERROR,
}

BULK_BATCH_SIZE = 500


@dataclass
class Activity:
    """One activity log line, for writing many at once."""

    message: str
    level: str = ActivityLog.Level.INFO
    user: User | None = None
    context: dict | None = None
    user_id: int | None = None  # instead of `user`, when the user is not loaded


def log_activity(source, message, *, level=ActivityLog.Level.INFO, user=None, context=None) -> ActivityLog:
    """Record a line in the admin's activity log and in Python logging. Context is redacted first; callers must
    still never put a secret in `message`."""
    entry = ActivityLog.objects.create(
        source=source, level=level, message=message, user=user, context=redact(context or {})
    )
    logger.log(_PYTHON_LEVELS[level], "[%s] %s", source, message)
    return entry


def log_activities(source, activities: Iterable[Activity]) -> int:
    """Record many lines with a few INSERTs (backfills write one per changed user). Routine lines go to Python
    logging at DEBUG only, so that a backfill of thousands of users does not flood the console; notices and
    worse keep their level."""
    rows = []
    for activity in activities:
        rows.append(
            ActivityLog(
                source=source,
                level=activity.level,
                message=activity.message,
                user_id=activity.user.pk if activity.user is not None else activity.user_id,
                context=redact(activity.context or {}),
            )
        )
        routine = activity.level == ActivityLog.Level.INFO
        logger.log(logging.DEBUG if routine else _PYTHON_LEVELS[activity.level], "[%s] %s", source, activity.message)
    ActivityLog.objects.bulk_create(rows, batch_size=BULK_BATCH_SIZE)
    return len(rows)
