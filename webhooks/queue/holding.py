"""The guards of the bulk writers: under the contacts' locks, which contacts of a planned batch are still to be
written in bulk — their users as the plan read them, their deliveries still this worker's, nobody having processed
them since the plan's reads. Any other contact is left to the one-by-one processing, which handles every case."""

from collections import Counter
from datetime import datetime

from users.emails import normalize_email
from users.models import ContactLock, User
from users.services.backfills.common import IN_LIST_LIMIT, batched
from users.services.contacts import Contact, lock_contacts

from ..models import WebhookDelivery
from .planning import LocalUser, ReadPlan

Status = WebhookDelivery.Status


def lock_and_hold(chosen: dict, plan: ReadPlan) -> dict:
    """Take the chosen contacts' locks (in the caller's transaction) and return those still to be written in bulk:
    their users as the plan read them (checked again under the locks: made staff, owed a password, renamed or
    deleted since, they are left to the one-by-one path), and all their deliveries still held by this worker (with
    its lease lost, another processing has them now)."""
    # One user named by two of the batch's contacts (email only, and email with cio_id) is processed one by one:
    # in bulk, one contact's data would replace the other's.
    named = Counter(plan.users[key].pk for key in chosen)
    chosen = {key: work for key, work in chosen.items() if named[plan.users[key].pk] == 1}
    lock_contacts([work.contact for work in chosen.values()])
    return still_held(_still_as_planned(chosen, plan))


def still_held(chosen: dict) -> dict:
    """The chosen contacts all of whose deliveries this worker still holds (locked until the commit): with its
    lease lost, another processing has them now."""
    delivery_ids = [d.pk for work in chosen.values() for d in work.deliveries]
    held = set()
    for chunk in batched(delivery_ids, IN_LIST_LIMIT):
        rows = WebhookDelivery.objects.select_for_update().filter(pk__in=chunk, status=Status.PROCESSING)
        held.update(rows.values_list("pk", flat=True))
    return {key: work for key, work in chosen.items() if all(d.pk in held for d in work.deliveries)}


def _still_as_planned(chosen: dict, plan: ReadPlan) -> dict:
    """The chosen contacts whose users still are as the plan read them, their rows locked until the commit."""
    by_pk = {plan.users[key].pk: key for key in chosen}
    fields = ("pk", "email_normalized", "cio_id", "is_staff", "is_superuser", "password_return_due")
    fields += ("welcome_email_due",)
    still = {}
    for chunk in batched(sorted(by_pk), IN_LIST_LIMIT):
        rows = User.objects.select_for_update(no_key=True).filter(pk__in=chunk).values_list(*fields)
        for pk, normalized, cio_id, staff, superuser, return_due, welcome_due in rows:
            key = by_pk[pk]
            planned = plan.users[key]
            unchanged = (normalized, cio_id) == (planned.email_normalized, planned.cio_id)
            if unchanged and not (staff or superuser or return_due or welcome_due):
                still[key] = chosen[key]
    return still


def identity_settled(contact: Contact, user: LocalUser) -> bool:
    """Whether the contact is already the user as they stand: a cio_id to link or an email changed in Customer.io
    is settled one by one (users.services.contacts.settle_identity), never in bulk."""
    if not contact.known_cio_id:
        return True
    email_same = not contact.known_email or normalize_email(contact.known_email) == user.email_normalized
    return user.cio_id == contact.known_cio_id and email_same


def processed_since(done: dict, since: datetime) -> set[str]:
    """Contacts processed since `since` by another processing: a delivery received after it and finished (this
    batch's are still processing), or a processing that read Customer.io after it (a synchronous delivery received
    earlier, say; its read is kept on the contact's lock row, see users.services.accounts.recent_reads)."""
    fresher = set()
    for chunk in batched(sorted(done), IN_LIST_LIMIT):
        rows = WebhookDelivery.objects.filter(
            contact_key__in=chunk, received_at__gt=since, status__in=WebhookDelivery.FINISHED_OK
        )
        fresher.update(rows.values_list("contact_key", flat=True))
        fresher.update(ContactLock.objects.filter(key__in=chunk, read_at__gt=since).values_list("key", flat=True))
    return fresher
