"""Events that arrived before their person had a user, linked when the user appears.

The worker leaves such an event processed without a user and waiting under its email, or its Customer.io id
(MessageEvent.unlinked_key, indexed where set). When a user is created, or saved with an email or Customer.io id
(the admin, a webhook's update, an import), the events waiting under that user's keys are linked to them and marked
waiting for the worker again, in the same transaction as the save: the worker then runs the reactions and sends
message_event_received with the user, as for an event that found its user at once. Users created in bulk by the
queue or an import send user_imported rather than post_save: that is listened to as well.

Not a trigger: a Customer.io id written to existing users in bulk (webhooks.queue.bulk_updates, the segment
sender) — such a user's events found them by email anyway, unless an event carried a Customer.io id alone.
"""

from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_save
from django.dispatch import receiver

from users.models import User
from users.signals import user_imported

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


@receiver(user_imported, dispatch_uid="webhooks.message_events.linking.imported")
def link_on_import(sender, user: User, **kwargs):
    link_waiting_events(user)
