import contextlib
import contextvars
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from settings_app.redaction import may_hold_secrets, redact, scrub

from ..models import ActivityLog, User
from .bulk_rows import insert_rows

logger = logging.getLogger("users.activity")

_PYTHON_LEVELS = {
    ActivityLog.Level.INFO: logging.INFO,
    ActivityLog.Level.NOTICE: logging.INFO,
    ActivityLog.Level.WARNING: logging.WARNING,
    ActivityLog.Level.ERROR: logging.ERROR,
}

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
    # As bulk_create would write them, without a model instance per line (a resync writes a million).
    created_at = _CREATED_AT_FIELD.get_db_prep_save(timezone.now(), connection)
    debug = logger.isEnabledFor(logging.DEBUG)
    # A context object shared by many lines (a backfill's) is redacted once: {id: (context, its JSON)}, the
    # context kept so that its id is not reused meanwhile.
    redacted: dict[int, tuple[dict, str]] = {}
    rows = []
    for activity in activities:
        context = activity.context or _NO_CONTEXT
        if id(context) not in redacted:
            redacted[id(context)] = (context, _redacted_json(context))
        rows.append(
            (
                created_at,
                # Plain strings: the drivers would store a choices member by its name, not its value.
                str(source),
                str(activity.level),
                scrub(activity.message),
                activity.user.pk if activity.user is not None else activity.user_id,
                redacted[id(context)][1],
                activity.delivery_id if activity.delivery_id is not None else delivery_id,
            )
        )
        routine = activity.level == ActivityLog.Level.INFO
        if debug or not routine:
            logger.log(
                logging.DEBUG if routine else _PYTHON_LEVELS[activity.level], "[%s] %s", source, activity.message
            )
    insert_rows(ActivityLog, ["created_at", "source", "level", "message", "user_id", "context", "delivery_id"], rows)
    return len(rows)


_NO_CONTEXT: dict = {}
_CREATED_AT_FIELD = ActivityLog._meta.get_field("created_at")
_CONTEXT_FIELD = ActivityLog._meta.get_field("context")


def _redacted_json(context: dict) -> str:
    """The redacted context as JSONField stores it (Django's json.dumps with the field's encoder, on either
    database). Most contexts hold nothing redact() would change (a resync's tag names): one look at their text
    spares the walk through every item, which cost more than the rest of writing the line."""
    # Without escapes: a non-ASCII text goes the long way (may_hold_secrets); an ASCII one is what the field writes.
    text = json.dumps(context, cls=_CONTEXT_FIELD.encoder, ensure_ascii=False)
    if not may_hold_secrets(text):
        return text
    return json.dumps(redact(context), cls=_CONTEXT_FIELD.encoder)
