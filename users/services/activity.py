import logging

from ..models import ActivityLog
from ..redaction import redact

logger = logging.getLogger("users.activity")

_PYTHON_LEVELS = {
    ActivityLog.Level.INFO: logging.INFO,
    ActivityLog.Level.NOTICE: logging.INFO,
    ActivityLog.Level.WARNING: logging.WARNING,
    ActivityLog.Level.ERROR: logging.ERROR,
}


def log_activity(source, message, *, level=ActivityLog.Level.INFO, user=None, context=None) -> ActivityLog:
    """Record a line in the admin's activity log and in Python logging. Context is redacted first; callers must
    still never put a secret in `message`."""
    entry = ActivityLog.objects.create(
        source=source, level=level, message=message, user=user, context=redact(context or {})
    )
    logger.log(_PYTHON_LEVELS[level], "[%s] %s", source, message)
    return entry
