"""The task's body: one claimed batch from its claim to every delivery's outcome — the contacts written in bulk
where they can be, the rest one by one."""

import logging
import time

from django.conf import settings

from cio.errors import CustomerIOError
from users.services.outbox import from_customerio
from users.services.password_hashing import HashedAhead

from ..actions import ACTIONS
from ..log_context import delivery_context, name_action
from ..outages import database_unavailable, outage
from ..processing import failure, request_for_delivery, run_action
from . import bulk_adds, bulk_tags, bulk_updates, planning
from .claiming import ContactWork, claim_work
from .holding import processed_since
from .leases import LeaseKeeper, keep_outcome
from .passwords_ahead import hash_generated_passwords_ahead
from .people import BatchPeople, fetch_people
from .retries import record_or_retry
from .settling import wait_for_burst

logger = logging.getLogger(__name__)


def process(delivery_id: int) -> None:
    """The task body. Never raises: every outcome is recorded on the deliveries. Log lines written for the batch
    name the task's delivery (and, once claimed, its action); each contact processed one by one names its own."""
    # What Customer.io told the site is never sent back to it (users.services.outbox).
    with delivery_context(delivery_id, None), from_customerio():
        try:
            _process_batch(delivery_id)
        except Exception as error:
            if not database_unavailable(error):
                raise
            # The database went away mid-batch: the deliveries still held are released to the queue, each with a
            # task of its own (leases.LeaseKeeper; at once, or by the worker once the database is back). This task
            # has nothing left to do: no failure to report beyond the outage's own line.
            outage.met(error)


def _process_batch(delivery_id: int) -> None:
    wait_for_burst(delivery_id)
    works = claim_work(delivery_id)
    if not works:
        return
    name_action(next((d.action for work in works for d in work.deliveries if d.pk == delivery_id), None))
    all_ids = [d.pk for work in works for d in work.deliveries]
    with LeaseKeeper(all_ids, works[0].deliveries[0].lease_expires_at):
        started = time.monotonic()
        # First, so that the pool hashes while the reads are made: generated passwords depend on nothing read.
        hashed_ahead = hash_generated_passwords_ahead(works)
        try:
            plan = planning.plan_reads(works)
        except CustomerIOError as exc:
            logger.warning("Planned reads for %d contacts failed: %s", len(works), exc)
            for ahead in hashed_ahead.values():
                ahead.hashed.cancel()  # those not started yet: the retry hashes its own
            for work in works:
                record_or_retry(work, failure(502, "upstream_error", f"Customer.io: {exc}", retryable=True), started)
            return
        done = bulk_tags.bulk_update_tags(works, plan, started)
        rest = [work for work in works if work.key not in done]
        people = fetch_people(rest)
        done = bulk_updates.bulk_update_people(rest, plan, people, started)
        rest = [work for work in rest if work.key not in done]
        done, failed = bulk_adds.bulk_add_new_people(rest, plan, people, hashed_ahead)
        for work, outcome in failed:
            record_or_retry(work, outcome, started)
        rest = [work for work in rest if work.key not in done]
        for work in rest:
            segments, people_read = plan.segments_for(work), people
            if segments is not None and processed_since({work.key: work}, plan.started_at):
                # Processed meanwhile (a later delivery, synchronously): the scan's and the batch's data may be
                # older than what it applied, so this contact reads its own.
                segments, people_read = None, BatchPeople()
            _process_contact(work, people_read, segments, hashed_ahead.get(work.contact.lock_key))


def _process_contact(
    work: ContactWork,
    people: BatchPeople,
    segments: list[dict] | None = None,
    hashed_ahead: HashedAhead | None = None,
) -> None:
    """`segments`: the contact's segments when a scan read them (planning); `hashed_ahead`: a generated password
    already hashed off the processing's path, for a new person's add."""
    started = time.monotonic()
    person = people.person_of(work)
    if person is None and people.unknown_to_customerio(work.contact):
        outcome = failure(422, "contact_not_found", f"Customer.io has no contact {work.contact}.")
    else:
        action_request = request_for_delivery(
            work.leading, work.contact, person=person, deadline_seconds=settings.WEBHOOK_TASK_DEADLINE
        )
        action_request.segments = segments
        if hashed_ahead is not None:
            action_request.hashed_ahead.append(hashed_ahead)
        outcome = run_action(ACTIONS[work.action], action_request)
    try:
        record_or_retry(work, outcome, started)
    except Exception as error:
        if database_unavailable(error):  # written when the deliveries are released, not processed again
            keep_outcome([d.pk for d in work.deliveries], outcome, int((time.monotonic() - started) * 1000))
        raise
