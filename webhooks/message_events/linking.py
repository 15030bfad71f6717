"""Events that arrived before their person had a user, linked when the user appears.

The worker leaves such an event processed without a user and waiting under its email, or its Customer.io id
(MessageEvent.unlinked_key, indexed where set). When a user is created, or saved with an email or Customer.io id
(the admin, a webhook's update, an import), the events waiting under that user's keys are linked to them and marked
waiting for the worker again, in the same transaction as the save: the worker then runs the reactions and sends
message_event_received with the user, as for an event that found its user at once. Users created in bulk by the
queue or an import send users_created_in_bulk rather than post_save: that is listened to as well, and looked at a
batch at a time (an import of a million people must not cost a million UPDATEs when nothing waits for them).

Not a trigger: a Customer.io id written to existing users in bulk (webhooks.queue.bulk_updates, the segment
sender) — such a user's events found them by email anyway, unless an event carried a Customer.io id alone.
"""

from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Lower
from django.db.models.signals import post_save
from django.dispatch import receiver

from users.emails import normalize_email
from users.models import User
from users.services.backfills.common import batched
from users.signals import users_created_in_bulk

from ..models import MessageEvent
from . import people, waking

# A save that changes none of these cannot give a user someone's waiting events (a login's last_login, say).
IDENTIFYING_FIELDS = {"email", "email_normalized", "cio_id"}


def link_waiting_events(user: User) -> int:
    """Link the events waiting under the user's email or Customer.io id to them, to be processed again. Returns
    how many (one indexed UPDATE; nothing when none wait)."""
    # Also the person's events not processed yet: on PostgreSQL a worker may hold one right now, having looked for
    # its user before this one existed. This UPDATE then waits for the worker's commit and checks the row again as
    # the worker left it (waiting under the user's key), so the event is linked rather than left waiting for good.
    person = Q(email__iexact=user.email) | Q(cio_id=user.cio_id) if user.cio_id else Q(email__iexact=user.email)
    waiting_for_them = Q(unlinked_key__in=people.keys_of(user)) | (Q(processed_at__isnull=True) & person)
    linked = MessageEvent.objects.filter(waiting_for_them, user__isnull=True).update(
        user=user, unlinked_key=None, processed_at=None
    )
    if linked:
        transaction.on_commit(waking.wake_worker)
    return linked


@receiver(post_save, sender=User, dispatch_uid="webhooks.message_events.linking.saved")
def link_on_save(sender, instance: User, created: bool, raw: bool = False, update_fields=None, **kwargs):
    if raw or not instance.email_normalized:
        return
    if created or update_fields is None or IDENTIFYING_FIELDS & set(update_fields):
        link_waiting_events(instance)


# Keys per query: well under SQLite's limit on a statement's parameters.
KEYS_PER_QUERY = 500


def link_waiting_events_of(users: list[User]) -> int:
    """link_waiting_events for each of many users, with a few queries per 500 of them to find the few anything
    waits for."""
    waited_for: dict[int, User] = {}
    # Events not processed yet first: a worker may be processing one right now and leave it waiting under a key,
    # which the key queries after this one then see. (The other order could miss an event between the two.)
    unprocessed = MessageEvent.objects.filter(processed_at__isnull=True, user__isnull=True).order_by()
    by_email = {user.email_normalized: user for user in users}
    for emails in batched([user.email for user in users], KEYS_PER_QUERY):
        # Folded by the database on both sides, as link_waiting_events' iexact does; then matched in normal form.
        same_email = unprocessed.annotate(email_folded=Lower("email")).filter(
            email_folded__in=[Lower(Value(email)) for email in emails]
        )
        for email in same_email.values_list("email", flat=True).distinct():
            if user := by_email.get(normalize_email(email)):
                waited_for[user.pk] = user
    by_cio_id = {user.cio_id: user for user in users if user.cio_id}
    for cio_ids in batched(list(by_cio_id), KEYS_PER_QUERY):
        for cio_id in unprocessed.filter(cio_id__in=cio_ids).values_list("cio_id", flat=True).distinct():
            waited_for[by_cio_id[cio_id].pk] = by_cio_id[cio_id]
    by_key = {key: user for user in users for key in people.keys_of(user)}
    for keys in batched(list(by_key), KEYS_PER_QUERY):
        found = MessageEvent.objects.filter(user__isnull=True, unlinked_key__in=keys).order_by()
        for key in found.values_list("unlinked_key", flat=True).distinct():
            waited_for[by_key[key].pk] = by_key[key]
    return sum(link_waiting_events(user) for user in waited_for.values())


@receiver(users_created_in_bulk, dispatch_uid="webhooks.message_events.linking.created_in_bulk")
def link_on_bulk_creation(sender, users: list[User], **kwargs):
    if users:
        link_waiting_events_of(users)
