"""Claiming: a worker takes a delivery with its contact's other waiting deliveries and, when it changes a user, the
other waiting deliveries that change users — a batch it then holds under a lease (leases)."""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from users.services.backfills.common import IN_LIST_LIMIT, batched
from users.services.contacts import Contact, lock_name

from ..actions import ACTIONS, ActionName, strongest, user_actions
from ..models import WebhookDelivery
from ..payload import person_from_body
from .leases import lease_length

Status = WebhookDelivery.Status

# The lock row workers take turns on to claim batches: prefixed like no contact's.
CLAIMING_LOCK = "queue:claim"


@dataclass
class ContactWork:
    """One contact's claimed deliveries, processed once with the strongest action among them."""

    contact: Contact
    deliveries: list[WebhookDelivery] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.deliveries[0].contact_key

    @property
    def action(self) -> str:
        return strongest(d.action for d in self.deliveries)

    @property
    def leading(self) -> WebhookDelivery:
        """The newest delivery with the winning action: its options (role, send_notification) apply."""
        action = self.action
        return max((d for d in self.deliveries if d.action == action), key=lambda d: (d.received_at, d.pk))

    @property
    def person(self) -> dict | None:
        for delivery in sorted(self.deliveries, key=lambda d: (d.received_at, d.pk), reverse=True):
            person = person_from_body(delivery.body, self.contact)
            if person is not None:
                return person
        return None


def claimable(now) -> Q:
    """Waiting deliveries, and processing ones whose worker let the lease run out."""
    return Q(status__in=WebhookDelivery.WAITING) | Q(status=Status.PROCESSING, lease_expires_at__lt=now)


def due(now) -> Q:
    """Not waiting out a retry backoff."""
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def _batch_contact_keys(now) -> set[str]:
    """The contacts of the other waiting deliveries that change users, oldest first, up to WEBHOOK_PLAN_CLAIM_LIMIT
    deliveries — but at most WEBHOOK_PLAN_ONE_BY_ONE_LIMIT contacts with an `update` or `add`. update_tags are
    written in bulk, so one worker takes a whole broadcast of them; an update or add is processed one contact at a
    time, so the rest wait for the next claim, by whichever worker is free, instead of queueing behind this one
    while the other worker idles. (A contact is taken with all its waiting deliveries or not at all: one whose
    update comes after the limit is left whole, even for its update_tags.)"""
    rows = (
        WebhookDelivery.objects.filter(status__in=WebhookDelivery.WAITING, action__in=user_actions())
        .filter(due(now))
        .order_by("received_at", "pk")
        .values_list("contact_key", "action")
    )
    limit = settings.WEBHOOK_PLAN_ONE_BY_ONE_LIMIT
    in_bulk: set[str] = set()
    one_by_one: set[str] = set()
    left: set[str] = set()
    for key, action in rows[: settings.WEBHOOK_PLAN_CLAIM_LIMIT]:
        if action == ActionName.UPDATE_TAGS or key in one_by_one:
            in_bulk.add(key)
        elif len(one_by_one) < limit:
            one_by_one.add(key)
        else:
            left.add(key)
    return (in_bulk - left) | one_by_one


def claim_work(delivery_id: int) -> list[ContactWork]:
    """Claim the delivery, its contact's other waiting deliveries and — when it changes a user — the other waiting
    deliveries that change users, up to WEBHOOK_PLAN_CLAIM_LIMIT (with every waiting delivery of their contacts;
    see _batch_contact_keys). Returns nothing when someone else holds or finished it."""
    action = WebhookDelivery.objects.filter(pk=delivery_id).values_list("action", flat=True).first()
    batch = action in ACTIONS and ACTIONS[action].touches_user
    with transaction.atomic():
        if batch:
            # Workers claim batches one at a time, so that two never split one burst (and scan it twice); the seed
            # is looked at once this worker's turn came, when the one before may have taken it.
            lock_name(CLAIMING_LOCK)
        now = timezone.now()
        # A leftover task of a delivery now waiting out a backoff does nothing: its retry has a task of its own.
        # (The contact's other deliveries are taken whatever their backoff: a newer delivery supersedes them.)
        seed = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(claimable(now), due(now), pk=delivery_id)
            .first()
        )
        if seed is None:
            return []
        contact_keys = {seed.contact_key}
        if batch:
            contact_keys |= _batch_contact_keys(now)
        claimed = [seed]
        for chunk in batched(sorted(contact_keys), IN_LIST_LIMIT):
            claimed += (
                WebhookDelivery.objects.select_for_update(skip_locked=True)
                .filter(claimable(now), contact_key__in=chunk)
                .exclude(pk=seed.pk)
            )
        claimed.sort(key=lambda d: (d.received_at, d.pk))
        lease = now + lease_length()
        for chunk in batched([d.pk for d in claimed], IN_LIST_LIMIT):
            WebhookDelivery.objects.filter(pk__in=chunk).update(
                status=Status.PROCESSING,
                lease_expires_at=lease,
                attempts=F("attempts") + 1,
                updated_at=now,
            )
        _finish_spare_tasks(claimed, now)
    work: dict[str, ContactWork] = {}
    for delivery in claimed:
        delivery.attempts += 1
        delivery.status, delivery.lease_expires_at = Status.PROCESSING, lease
        contact = Contact.stored(delivery.contact_type, delivery.contact, delivery.contact_key)
        entry = work.setdefault(delivery.contact_key, ContactWork(contact))
        entry.deliveries.append(delivery)
        entry.contact = contact  # oldest first: the newest delivery's identifiers win (its email, after a change)
    return list(work.values())


def _finish_spare_tasks(claimed: list[WebhookDelivery], now) -> None:
    """The waiting tasks of the deliveries claimed with this one have nothing left to do: mark them done, so that
    workers do not spend a burst's length running 20,000 empty tasks ahead of newer deliveries. (A claimed
    delivery that is retried or recovered gets a task of its own again.)"""
    task_ids = sorted({d.task_id for d in claimed if d.task_id})
    for chunk in batched(task_ids, IN_LIST_LIMIT):
        DBTaskResult.objects.filter(pk__in=chunk, status=TaskResultStatus.READY).update(
            status=TaskResultStatus.SUCCESSFUL, finished_at=now
        )
