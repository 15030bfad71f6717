"""Queued mode: accept fast, keep every accepted delivery, drain within Customer.io's limits.

django-tasks-db runs tasks but neither retries them nor notices a worker that died, so the guarantees live on
WebhookDelivery: a worker claims deliveries with a lease it renews while it works; a sweep re-queues deliveries
whose lease expired or whose task went missing; a failure that may pass is retried with backoff.

One task processes more than its own delivery: every waiting delivery of the same contact (the strongest action
wins, so an old failure never blocks a newer delivery) and, for the actions that change users, the other waiting
ones up to WEBHOOK_PLAN_CLAIM_LIMIT (of which at most WEBHOOK_PLAN_ONE_BY_ONE_LIMIT contacts with an update or add,
so that workers share a broadcast): their attributes come 100 contacts a call, and their segments from the cheaper
of one call per contact or membership scans (webhooks.planning, which also writes update_tags in bulk, as
webhooks.bulk_updates writes plain updates and webhooks.bulk_adds creates new people with Return Password on).
"""

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from cio import get_client
from cio.client import ATTRIBUTES_BATCH_LIMIT, deadline_in
from cio.errors import CustomerIOError
from users.emails import customerio_email_key, normalize_email
from users.services.accounts import AccountRules, generate_password
from users.services.backfills.common import held_identities
from users.services.contacts import Contact, ContactKind, lock_name
from users.services.password_hashing import HashedAhead, shared_pool

from . import bulk_adds, bulk_updates, planning, task_rows
from .actions import ACTIONS, ActionName, strongest, user_actions
from .deliveries import Opened, OpenState, insert_or_reopen, record_outcome
from .models import WebhookDelivery
from .payload import person_from_body
from .processing import Outcome, action_request, failure, run_action

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


class WorkerDied(Exception):
    """Recorded on the task of a worker that died mid-processing (its lease ran out); its delivery is re-queued or,
    past retrying, failed."""


def lease() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)


# Enqueueing ---------------------------------------------------------------------------------------------------------


def enqueue(delivery: WebhookDelivery, run_after=None, *, also: list[int] = ()) -> None:
    """Create the task that will process the delivery, in the caller's transaction (a rollback leaves neither).
    Deliveries in `also` (the same contact's, processed together) are marked as waiting on the same task."""
    task_id = task_rows.new_task_id()
    task_rows.insert_task(task_id, delivery.pk, run_after)
    WebhookDelivery.objects.filter(pk__in=[delivery.pk, *also]).update(task_id=task_id)
    delivery.task_id = task_id


def open_queued(fields: dict, key: str | None) -> Opened:
    """Create the delivery's row together with its task's (webhooks.task_rows), or find the row of an earlier attempt
    of the same Customer.io delivery and say what to do with it: a retry of one that failed is queued again, with a
    new task, in the transaction that claims it."""
    # Counted as an attempt when a worker claims it.
    claim = {"status": Status.QUEUED, "lease_expires_at": None}
    values = {**fields, **claim, "dedup_key": key, "attempts": 0}
    return insert_or_reopen(
        lambda: Opened(None, OpenState.NEW, task_rows.insert_delivery_with_task(values).pk),
        key,
        claim,
        attempt=0,
        again=enqueue,
    )


def requeue(delivery: WebhookDelivery) -> bool:
    """Put a finished or waiting delivery (back) in the queue — a replay from the admin. One being processed right
    now is left alone (returns False)."""
    with transaction.atomic():
        replayable = WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=Status.PROCESSING)
        if not replayable.update(
            status=Status.QUEUED, lease_expires_at=None, next_attempt_at=None, updated_at=timezone.now()
        ):
            return False
        enqueue(delivery)
    return True


# Claiming ---------------------------------------------------------------------------------------------------------


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


# The lock row workers take turns on to claim batches: prefixed like no contact's.
CLAIMING_LOCK = "queue:claim"


def _claimable(now):
    """Waiting deliveries, and processing ones whose worker let the lease run out."""
    return Q(status__in=WebhookDelivery.WAITING) | Q(status=Status.PROCESSING, lease_expires_at__lt=now)


def _due(now):
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
        .filter(_due(now))
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
            .filter(_claimable(now), _due(now), pk=delivery_id)
            .first()
        )
        if seed is None:
            return []
        contact_keys = {seed.contact_key}
        if batch:
            contact_keys |= _batch_contact_keys(now)
        claimed = [seed]
        for chunk in planning.batched(sorted(contact_keys), planning.CHUNK):
            claimed += (
                WebhookDelivery.objects.select_for_update(skip_locked=True)
                .filter(_claimable(now), contact_key__in=chunk)
                .exclude(pk=seed.pk)
            )
        claimed.sort(key=lambda d: (d.received_at, d.pk))
        for chunk in planning.batched([d.pk for d in claimed], planning.CHUNK):
            WebhookDelivery.objects.filter(pk__in=chunk).update(
                status=Status.PROCESSING,
                lease_expires_at=now + lease(),
                attempts=F("attempts") + 1,
                updated_at=now,
            )
        _finish_spare_tasks(claimed, now)
    work: dict[str, ContactWork] = {}
    for delivery in claimed:
        delivery.attempts += 1
        contact = Contact.stored(delivery.contact_type, delivery.contact, delivery.contact_key)
        entry = work.setdefault(delivery.contact_key, ContactWork(contact))
        entry.deliveries.append(delivery)
        entry.contact = contact  # oldest first: the newest delivery's identifiers win (its email, after a change)
    return list(work.values())


def _finish_spare_tasks(claimed: list[WebhookDelivery], now) -> None:
    """The waiting tasks of the deliveries claimed with this one have nothing left to do: mark them done, so that
    workers do not spend a burst's length running 20,000 empty tasks ahead of newer deliveries. (A claimed
    delivery that is retried or recovered gets a task of its own again.)"""
    from django_tasks_db.models import DBTaskResult

    task_ids = sorted({d.task_id for d in claimed if d.task_id})
    for chunk in planning.batched(task_ids, planning.CHUNK):
        DBTaskResult.objects.filter(pk__in=chunk, status="READY").update(status="SUCCESSFUL", finished_at=now)


# Processing -------------------------------------------------------------------------------------------------------


def process(delivery_id: int) -> None:
    """The task body. Never raises: every outcome is recorded on the deliveries."""
    planning.wait_for_burst(delivery_id)
    works = claim_work(delivery_id)
    if not works:
        return
    all_ids = [d.pk for work in works for d in work.deliveries]
    with LeaseKeeper(all_ids):
        started = time.monotonic()
        # First, so that the pool hashes while the reads are made: generated passwords depend on nothing read.
        hashed_ahead = _hash_generated_passwords_ahead(works)
        try:
            plan = planning.plan_reads(works)
        except CustomerIOError as exc:
            logger.warning("Planned reads for %d contacts failed: %s", len(works), exc)
            for ahead in hashed_ahead.values():
                ahead.hashed.cancel()  # those not started yet: the retry hashes its own
            for work in works:
                _record(work, failure(502, "upstream_error", f"Customer.io: {exc}", retryable=True), started)
            return
        done = planning.bulk_update_tags(works, plan, started)
        rest = [work for work in works if work.key not in done]
        persons = _fetch_people_in_batch(rest)
        done = bulk_updates.bulk_update_people(rest, plan, persons, started)
        rest = [work for work in rest if work.key not in done]
        done, failed = bulk_adds.bulk_add_new_people(rest, plan, persons, hashed_ahead)
        for work, outcome in failed:
            _record(work, outcome, started)
        rest = [work for work in rest if work.key not in done]
        for work in rest:
            segments, people = plan.segments_for(work), persons
            if segments is not None and planning.processed_since({work.key: work}, plan.started_at):
                # Processed meanwhile (a later delivery, synchronously): the scan's and the batch's data may be
                # older than what it applied, so this contact reads its own.
                segments, people = None, {}
            _process_contact(work, people, segments, hashed_ahead.get(work.contact.lock_key))


def _fetch_people_in_batch(works: list[ContactWork]) -> dict[str, dict]:
    """Attributes of every email contact that needs them, 100 per call. A failed batch call is not fatal: each
    of its contacts then fetches (and retries) on its own."""
    wanted = [
        work.contact.value
        for work in works
        if ACTIONS[work.action].needs_person and work.contact.kind == ContactKind.EMAIL and work.person is None
    ]
    if len(wanted) < 2:
        return {}
    found = {}
    asked = []
    for chunk in planning.batched(wanted, min(settings.WEBHOOK_BATCH_SIZE, ATTRIBUTES_BATCH_LIMIT)):
        try:
            people = get_client().get_attributes_batch(chunk, deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE))
        except CustomerIOError as exc:
            logger.warning("Batch attributes call for %d contacts failed: %s", len(chunk), exc)
            continue
        asked += chunk
        for person in people:
            email = (person.get("identifiers") or {}).get("email") or (person.get("attributes") or {}).get("email")
            if email:
                found[customerio_email_key(email)] = person
    # Someone Customer.io did not return is unknown to it: the absence is the answer (contact_not_found).
    return {customerio_email_key(email): found.get(customerio_email_key(email), MISSING) for email in asked}


MISSING = {"missing": True}


def _process_contact(
    work: ContactWork,
    persons: dict[str, dict],
    segments: list[dict] | None = None,
    hashed_ahead: HashedAhead | None = None,
) -> None:
    """`segments`: the contact's segments when a scan read them (webhooks.planning); `hashed_ahead`: a generated
    password already hashed off the processing's path, for a new person's add."""
    started = time.monotonic()
    leading = work.leading
    person = work.person
    if person is None and work.contact.kind == ContactKind.EMAIL:
        person = persons.get(customerio_email_key(work.contact.value))
    if person is MISSING:
        outcome = failure(422, "contact_not_found", f"Customer.io has no contact {work.contact}.")
    else:
        request = action_request(leading, work.contact, person=person, deadline_seconds=settings.WEBHOOK_TASK_DEADLINE)
        request.segments = segments
        if hashed_ahead is not None:
            request.hashed_ahead.append(hashed_ahead)
        outcome = run_action(ACTIONS[work.action], request)
    _record(work, outcome, started)


# Generated passwords: hashed on every core, ahead of the processing ---------------------------------------------------


def _hash_generated_passwords_ahead(works: list[ContactWork]) -> dict[str, HashedAhead]:
    """For a batch of `add`s of people new to the site with Return Password on: a generated password each, hashed
    from the claim on in the worker's process pool (one process per core) while the batch is read and processed —
    outside any transaction or lock, and at the machine's hashing speed rather than one hash at a time. Keyed by contact
    lock key; a hash the processing finds no use for (the user appeared meanwhile) is dropped. A lone `add` hashes
    its own on a thread (see accounts.add)."""
    checkable = (ContactKind.EMAIL, ContactKind.CIO_ID)  # an `id` alone cannot tell whether the site holds them
    adds = [work for work in works if work.action == ActionName.ADD and work.contact.kind in checkable]
    if len(adds) < 2 or not AccountRules.load().returns_passwords:
        return {}
    emails = {normalize_email(w.contact.known_email) for w in adds if w.contact.known_email}
    cio_ids = {w.contact.known_cio_id for w in adds if w.contact.known_cio_id}
    known_emails, known_cio_ids = held_identities(emails, cio_ids)
    new = [
        work
        for work in adds
        if work.contact.known_cio_id not in known_cio_ids
        and normalize_email(work.contact.known_email) not in known_emails
    ]
    if len(new) < 2:
        return {}
    pool = shared_pool()
    return {work.contact.lock_key: pool.hash_ahead(generate_password(), generated=True) for work in new}


def _record(work: ContactWork, outcome: Outcome, started: float) -> None:
    now = timezone.now()
    duration_ms = int((time.monotonic() - started) * 1000)
    first_received = min(d.received_at for d in work.deliveries)
    give_up = (now - first_received).total_seconds() >= settings.WEBHOOK_RETRY_FOR
    if outcome.retryable and not give_up:
        attempts = max(d.attempts for d in work.deliveries)
        next_attempt = now + timedelta(seconds=retry_delay(attempts))
        with transaction.atomic():
            if record_outcome(work.deliveries, outcome, duration_ms=duration_ms, retry_at=next_attempt):
                enqueue(work.leading, run_after=next_attempt, also=[d.pk for d in work.deliveries])
        return
    record_outcome(work.deliveries, outcome, duration_ms=duration_ms, gave_up=outcome.retryable, leading=work.leading)


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter, capped."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


class LeaseKeeper:
    """Renews the claimed deliveries' lease while they are processed, from a thread of its own."""

    def __init__(self, delivery_ids: list[int]):
        self.delivery_ids = delivery_ids
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="delivery-lease", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join(timeout=30)

    def _renew(self):
        interval = max(1.0, settings.WEBHOOK_LEASE_SECONDS / 3)
        try:
            while not self.stopped.wait(interval):
                try:
                    for chunk in planning.batched(self.delivery_ids, planning.CHUNK):
                        WebhookDelivery.objects.filter(pk__in=chunk, status=Status.PROCESSING).update(
                            lease_expires_at=timezone.now() + lease()
                        )
                except Exception:
                    # One failed renewal is not fatal (a lease lasts three intervals): try again next time.
                    logger.exception("Renewing delivery leases failed")
                    connection.close()
        finally:
            connection.close()
