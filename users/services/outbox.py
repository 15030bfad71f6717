"""What the site tells Customer.io by itself: the outbox (users.OutboxEntry) of profile changes, events and login links.

A change made on the site — a user registered or created in the admin or by code, a field mapped to push changed,
the email or role changed, a login — adds one row in the transaction that makes it, and wakes the background worker
once it commits (outbox_sender.py sends what waits, coalesced, in /api/v2/batch requests). The request never waits
for Customer.io.

No echo: a change the site makes because Customer.io told it to (a webhook, an import, a meta pull) runs inside
`from_customerio()` and records nothing — Customer.io already has it.
"""

import contextlib
import contextvars
import functools
import os
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django_tasks_db.models import DBTaskResult

from settings_app.models import WebhookSettings

from ..models import OutboxEntry, User
from ..tasks import send_outbox
from .attributes import push_mappings
from .segment_changes import Waiting

_from_customerio = contextvars.ContextVar("from_customerio", default=False)


@contextlib.contextmanager
def from_customerio():
    """Changes made inside come from Customer.io and are never sent back to it."""
    token = _from_customerio.set(True)
    try:
        yield
    finally:
        _from_customerio.reset(token)


def told_by_customerio(function):
    """Decorator form of from_customerio()."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        with from_customerio():
            return function(*args, **kwargs)

    return run


def is_from_customerio() -> bool:
    return _from_customerio.get()


def _track_api_configured() -> bool:
    return bool(settings.CUSTOMERIO_SITE_ID and settings.CUSTOMERIO_TRACK_API_KEY)


def sends_for(user: User, site_settings: WebhookSettings | None = None) -> bool:
    """Whether the site tells Customer.io about this user at all: Track API credentials set, the user not a staff
    account (unless the settings say so), and the change not Customer.io's own."""
    if is_from_customerio() or not _track_api_configured():
        return False
    site_settings = site_settings or WebhookSettings.cached()
    return site_settings.push_staff or not (user.is_staff or user.is_superuser)


# Profile changes -------------------------------------------------------------------------------------------------

# What a change must touch for Customer.io to be told: the person's identity and role, their login, and whatever
# field a mapping pushes.
_ALWAYS_WATCHED = ("email", "role_id", "last_login")
# Every user field a mapping may push, as loaded: kept when a user is loaded (post_init), compared after a save.
_SNAPSHOT_FIELDS = ("email", "role_id", "last_login", "first_name", "last_name", "username", "date_joined", "id")


def remember_state(user: User) -> None:
    """Called when a user is loaded: what a later save is compared with. No query and no configuration read (users
    are loaded everywhere, in failed transactions too); a field left out of the query (.only(), .defer()) is kept
    as None rather than loaded."""
    loaded = user.__dict__
    snapshot = {name: loaded.get(name) for name in _SNAPSHOT_FIELDS}
    snapshot["meta"] = dict(loaded.get("meta") or {})
    user._pushed_snapshot = snapshot


def _pushed_values(values: dict) -> tuple:
    """The values Customer.io would be sent, from a snapshot or a user's __dict__."""
    found = [values.get(name) for name in _ALWAYS_WATCHED]
    meta = values.get("meta") or {}
    for mapping in push_mappings():
        field_name = mapping.user_field
        if field_name.startswith("meta."):
            found.append(meta.get(field_name.removeprefix("meta.")))
        elif field_name != "role":
            found.append(values.get(field_name))
    return tuple(found)


def may_change_pushed_fields(update_fields) -> bool:
    """Whether a save of only these fields can change what Customer.io is sent."""
    names = set(update_fields)
    if names & {"email", "role", "role_id", "last_login", "meta"}:
        return True
    return any(mapping.user_field in names for mapping in push_mappings())


def record_profile_change(user: User, *, created: bool) -> None:
    """After a user's save: one row when Customer.io has something new to hear about them (post_save calls this)."""
    before = getattr(user, "_pushed_snapshot", None)
    if not created and before is not None and _pushed_values(before) == _pushed_values(user.__dict__):
        return
    # A user built by hand and saved over an existing row has no snapshot: counted as a change.
    previous_email = (before or {}).get("email") or ""
    remember_state(user)  # a second save in the same request sends nothing more unless something else changed
    site_settings = WebhookSettings.cached()
    if not site_settings.push_profiles or not sends_for(user, site_settings):
        return
    email_changed = not created and previous_email and previous_email != user.email
    OutboxEntry.objects.create(
        user=user,
        kind=OutboxEntry.Kind.PROFILE,
        # The email is sent only when it changed here (Customer.io may have changed it since, and a login must not
        # put the old one back); without a cio_id the worker also finds the person by the address Customer.io knows.
        previous_email=previous_email if email_changed else "",
    )
    transaction.on_commit(wake_worker)


# Events ---------------------------------------------------------------------------------------------------------

EVENT_NAME_MAX_LENGTH = OutboxEntry._meta.get_field("event_name").max_length


def record_event(user: User, name: str, data: dict | None = None) -> OutboxEntry | None:
    """One event row for the user (users.tracking.track checks the name and data first). None when the site does
    not send for this user (staff, no Track API credentials)."""
    if not sends_for(user):
        return None
    entry = OutboxEntry.objects.create(
        user=user, kind=OutboxEntry.Kind.EVENT, event_name=name, event_data=data or {}, event_id=new_ulid()
    )
    transaction.on_commit(wake_worker)
    return entry


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID (48-bit millisecond time, 80 random bits, Crockford base 32), the id Customer.io deduplicates events
    by. Written here: ten lines, where a package would add a dependency for one function."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# Login links ----------------------------------------------------------------------------------------------------


def owe_login_links(users: Iterable[User], *, created: bool) -> None:
    """Rows for login links the worker makes and writes to Customer.io, for users an `add` webhook `created` (or
    found, when the settings say so). The webhook is Customer.io's, but the link is the site's own news: it is owed
    even from_customerio(). Never for staff or superusers."""
    site_settings = WebhookSettings.cached()
    if not site_settings.returns_login_links or not _track_api_configured():
        return
    if not created and not site_settings.return_login_link_to_existing:
        return
    rows = [
        OutboxEntry(user=user, kind=OutboxEntry.Kind.LOGIN_LINK)
        for user in users
        if not (user.is_staff or user.is_superuser)
    ]
    if rows:
        OutboxEntry.objects.bulk_create(rows)
        transaction.on_commit(wake_worker)


# The worker ------------------------------------------------------------------------------------------------------


def wake_worker() -> None:
    """Enqueue the sending task unless one already waits (10,000 changes in a burst make one task, not 10,000)."""
    waiting = DBTaskResult.objects.ready().filter(task_path=send_outbox.module_path)
    if not waiting.exists():
        send_outbox.enqueue()


def wake_if_due() -> None:
    """For the worker's sweep: rows whose retry time came, or whose worker died, get a task again."""
    from .outbox_sender import due_entries

    if due_entries().exists():
        wake_worker()


def waiting_entries() -> Waiting:
    """Rows not sent to Customer.io yet (a row leaves once sent), and when the oldest was made: for the overview and
    /metrics."""
    figures = OutboxEntry.objects.aggregate(n=Count("pk"), oldest=Min("created_at"))
    return Waiting(figures["n"], figures["oldest"])
