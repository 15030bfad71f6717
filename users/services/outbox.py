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
from copy import deepcopy

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min

from settings_app.models import FIRST_CLASS_USER_FIELDS, WebhookSettings

from ..models import OutboxEntry, User
from ..tasks import send_outbox
from .attributes import push_mappings
from .segment_changes import Waiting
from .task_waking import AtMostEvery, wake_task

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

# The user fields a mapping may push, as kept when a user is loaded (post_init) and compared after a save: the
# first-class ones of FieldMapping's choices (role as its id), and meta, copied.
_SNAPSHOT_FIELDS = (
    *("role_id" if name == "role" else name for name in sorted(FIRST_CLASS_USER_FIELDS) if name != "password"),
    "meta",
)
CREATED = OutboxEntry.CREATED


def remember_state(user: User, names=None) -> None:
    """Called when a user is loaded (and after a save, for the fields it wrote): what a later save is compared
    with. No query and no configuration read (users are loaded everywhere, in failed transactions too); a field
    left out of the query (.only(), .defer()) is kept as None rather than loaded."""
    loaded = user.__dict__
    snapshot = dict(getattr(user, "_pushed_snapshot", None) or {})  # a new dict: a caller may hold the old one
    for name in _SNAPSHOT_FIELDS if names is None else names:
        snapshot[name] = deepcopy(loaded.get(name)) if name == "meta" else loaded.get(name)
    user._pushed_snapshot = snapshot


def _followed_fields() -> list[str]:
    """The user fields whose change Customer.io hears of: the email (the person's identity) and every field a
    mapping pushes."""
    return ["email", *(mapping.user_field for mapping in push_mappings() if mapping.user_field != "email")]


def _value(values: dict, field_name: str):
    if field_name.startswith("meta."):
        return (values.get("meta") or {}).get(field_name.removeprefix("meta."))
    return values.get("role_id" if field_name == "role" else field_name)


def _attribute_name(field_name: str) -> str:
    """The User attribute a followed field is stored in."""
    return "meta" if field_name.startswith("meta.") else "role_id" if field_name == "role" else field_name


def may_change_pushed_fields(update_fields) -> bool:
    """Whether a save of only these fields can change what Customer.io is sent."""
    names = {"role_id" if name == "role" else name for name in update_fields}
    return any(_attribute_name(field_name) in names for field_name in _followed_fields())


def record_profile_change(user: User, *, created: bool, update_fields=None) -> None:
    """After a user's save: one row naming the followed fields that changed, when any did (post_save calls this).
    With `update_fields`, only those were written: the others keep their remembered values, so a change made on
    the instance but not saved yet is still news when it is saved."""
    before = getattr(user, "_pushed_snapshot", None)
    written = None if update_fields is None else {"role_id" if name == "role" else name for name in update_fields}
    if created:
        changed = [CREATED]
    else:
        followed = [name for name in _followed_fields() if written is None or _attribute_name(name) in written]
        if before is None:  # a user built by hand and saved over an existing row: nothing to compare with
            changed = followed
        else:
            changed = [name for name in followed if _value(before, name) != _value(user.__dict__, name)]
    remember_state(user, None if written is None else [name for name in _SNAPSHOT_FIELDS if name in written])
    if not changed:
        return
    site_settings = WebhookSettings.cached()
    if not site_settings.push_profiles or not sends_for(user, site_settings):
        return
    previous_email = (before or {}).get("email") or ""
    email_changed = "email" in changed and previous_email and previous_email != user.email
    OutboxEntry.objects.create(
        user=user,
        kind=OutboxEntry.Kind.PROFILE,
        fields=changed,
        # The address Customer.io still knows the person by, for the worker to find them when the site has no
        # cio_id (users.services.outbox_sender).
        previous_email=previous_email if email_changed else "",
    )
    transaction.on_commit(wake_worker_soon, robust=True)


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
    transaction.on_commit(wake_worker_soon, robust=True)
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
        transaction.on_commit(wake_worker_soon, robust=True)


# The worker ------------------------------------------------------------------------------------------------------


def wake_worker() -> None:
    """Enqueue the sending task unless one already waits (10,000 changes in a burst make one task, not 10,000)."""
    wake_task(send_outbox)


# After a commit that added rows: a web process looks for a waiting task at most twice a second, so a burst of changes
# costs its requests one INSERT each, not a SELECT too (the sweep, wake_if_due, finds what slips between).
wake_worker_soon = AtMostEvery(0.5, wake_worker)


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
