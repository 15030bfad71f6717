"""Whose message event is it: the site's user with the event's Customer.io id, else with its email (compared as every
email lookup compares them, users.emails.normalize_email). An event without either (a workspace that identifies
people by its own `id` only) is about nobody the site can know."""

from users.emails import normalize_email
from users.models import User

from ..models import MessageEvent

EMAIL = "email:"
CIO_ID = "cio_id:"


def unlinked_key(event: MessageEvent) -> str | None:
    """What an event found no user for waits under (MessageEvent.unlinked_key): its email (every user has one), else
    its Customer.io id; None when it has neither."""
    if event.email:
        return EMAIL + normalize_email(event.email)
    if event.cio_id:
        return CIO_ID + event.cio_id
    return None


def keys_of(user: User) -> list[str]:
    """The unlinked keys a user's events would wait under."""
    keys = [EMAIL + user.email_normalized]
    if user.cio_id:
        keys.append(CIO_ID + user.cio_id)
    return keys


def users_of(events: list[MessageEvent]) -> dict[int, User]:
    """{event pk: its user} for the events whose person has a user: two indexed queries for the whole batch."""
    cio_ids = {event.cio_id for event in events if event.cio_id}
    emails = {normalize_email(event.email) for event in events if event.email}
    if not emails and not cio_ids:
        return {}
    by_cio_id = {user.cio_id: user for user in User.objects.filter(cio_id__in=cio_ids)}
    by_email = {user.email_normalized: user for user in User.objects.filter(email_normalized__in=emails)}
    found = {}
    for event in events:
        user = by_cio_id.get(event.cio_id) if event.cio_id else None
        if user is None and event.email:
            user = by_email.get(normalize_email(event.email))
            if user is not None and user.cio_id and event.cio_id and user.cio_id != event.cio_id:
                user = None  # another Customer.io person holds that address on the site: not theirs
        if user is not None:
            found[event.pk] = user
    return found
