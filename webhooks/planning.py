"""Planned reads for a claimed batch: the fewest App API calls that give every contact its segments.

A worker that claims many waiting deliveries (a broadcast: one webhook per person entering a big segment) can read
each contact's segments with one call per contact, or read every segment's membership with a few pages (up to
30,000 people a page) and find its contacts in them — the backfills' way. The planner counts both: per contact, one
call for each contact that will load tags; by scans, the segment list, each segment's pages (from its size, which
Customer.io reports, or a scan counted, and which is reused for a minute) and the size calls still to make. It picks
the cheaper.

Every read is made after the batch was claimed, so after each of its deliveries was received: a delivery that
arrives during a scan is not in the batch and waits for a later read. A burst that is still arriving is let settle
(WEBHOOK_PLAN_SETTLE_SECONDS without a new delivery) before a big batch is claimed, but never longer than
WEBHOOK_PLAN_MAX_WAIT_SECONDS after the oldest waiting delivery was received.

The update_tags contacts of a scanned batch get their tags in bulk (tag_resync.apply_memberships, the resync's
writer), their deliveries recorded in the same transaction under the contacts' locks; the others are processed one
by one as before, with the segments the scan found (webhooks.bulk_updates writes plain updates the same way).
"""

import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from cio import get_client
from cio.client import MEMBERSHIP_PAGE_LIMIT, deadline_in
from cio.errors import ContactNotFound
from users.emails import customerio_email_key, normalize_email
from users.models import ActivityLog, ContactLock, Tag, User, UserTag
from users.services.activity import Activity, log_activities
from users.services.backfills.common import IN_LIST_LIMIT, batched
from users.services.backfills.tag_resync import Memberships, apply_memberships
from users.services.contacts import ContactKind, lock_contacts

from .actions import ActionName, user_actions
from .deliveries import record_successes
from .models import WebhookDelivery

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status
PER_CONTACT, SCAN = "per_contact", "scan"
SIZE_CACHE_SECONDS = 60
CHUNK = IN_LIST_LIMIT


# Waiting for a burst to settle -------------------------------------------------------------------------------------


def wait_for_burst(delivery_id: int) -> None:
    """Before claiming a batch big enough for scans, let a burst that is still arriving settle, so that one scan
    serves it rather than one per moment of it. Bounded: the oldest waiting delivery never waits more than
    WEBHOOK_PLAN_MAX_WAIT_SECONDS for it."""
    threshold = None
    while True:
        now = timezone.now()
        waiting = WebhookDelivery.objects.filter(status__in=WebhookDelivery.WAITING, action__in=user_actions()).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )
        seen = waiting.aggregate(n=Count("pk"), first=Min("received_at"), last=Max("received_at"))
        if threshold is None:
            threshold = 1 + Tag.objects.count()  # fewer contacts than this are read one by one anyway
        if seen["n"] <= threshold or not waiting.filter(pk=delivery_id).exists():
            return
        quiet = (now - seen["last"]).total_seconds() >= settings.WEBHOOK_PLAN_SETTLE_SECONDS
        overdue = (now - seen["first"]).total_seconds() >= settings.WEBHOOK_PLAN_MAX_WAIT_SECONDS
        if quiet or overdue:
            return
        time.sleep(min(0.25, settings.WEBHOOK_PLAN_SETTLE_SECONDS))


# Choosing --------------------------------------------------------------------------------------------------------


@dataclass
class LocalUser:
    pk: int
    email: str
    email_normalized: str
    cio_id: str | None
    protected: bool
    owed: bool  # a password return or welcome email is due: processed one by one, which sends them


@dataclass
class ReadPlan:
    method: str  # PER_CONTACT | SCAN
    per_contact_calls: int
    scan_calls: int | None  # None: not worked out (per contact was plainly cheaper)
    segments: list[dict] = field(default_factory=list)  # the segment list read for a scan
    # contact key -> the contact's segments, for every contact that loads tags (a scan's answer)
    segments_by_key: dict[str, list[dict]] = field(default_factory=dict)
    users: dict[str, LocalUser] = field(default_factory=dict)  # contact key -> local user
    # Before any read of the plan, after the batch was claimed.
    started_at: datetime = field(default_factory=timezone.now)

    def segments_for(self, work) -> list[dict] | None:
        return self.segments_by_key.get(work.key) if self.method == SCAN else None


def local_users(works) -> dict[str, LocalUser]:
    """The local user of each contact named by email or cio_id, a few queries for the whole batch."""
    by_email = {normalize_email(w.contact.value): w.key for w in works if w.contact.kind == ContactKind.EMAIL}
    # A contact carrying a cio_id is found by it first (the later lookup wins), as users.services.contacts does.
    by_cio_id = {w.contact.known_cio_id: w.key for w in works if w.contact.known_cio_id}
    found: dict[str, LocalUser] = {}
    fields = ("pk", "email", "email_normalized", "cio_id", "is_staff", "is_superuser", "password_return_due")
    fields += ("welcome_email_due",)
    for lookup, keys in (("email_normalized", by_email), ("cio_id", by_cio_id)):
        for chunk in batched(sorted(keys), CHUNK):
            for row in User.objects.filter(**{f"{lookup}__in": chunk}).values_list(*fields):
                pk, email, normalized, cio_id, staff, superuser, return_due, welcome_due = row
                key = keys[normalized if lookup == "email_normalized" else cio_id]
                found[key] = LocalUser(pk, email, normalized, cio_id, staff or superuser, return_due or welcome_due)
    return found


def loads_tags(work, users: dict[str, LocalUser]) -> bool:
    """Whether processing the contact reads their segments: an `add`, or a known user (not a staff account)."""
    user = users.get(work.key)
    if user is not None and user.protected:
        return False
    return work.action == ActionName.ADD or user is not None or work.contact.kind == ContactKind.ID


def plan_reads(works) -> ReadPlan:
    """Choose per-contact reads or scans for the batch and, for scans, make them. Raises CustomerIOError when a
    read the scan needs fails (the batch is retried later)."""
    started_at = timezone.now()
    users = local_users(works)
    readers = [work for work in works if loads_tags(work, users)]
    per_contact = len(readers)
    # Every segment costs at least one page: with no more contacts than that, one call each is never worse.
    if per_contact <= 1 + Tag.objects.count():
        return ReadPlan(PER_CONTACT, per_contact, None, users=users, started_at=started_at)
    client = get_client()
    segments = client.list_segments(deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE))
    sizes = {int(s["id"]): cache.get(_size_key(s["id"])) for s in segments}
    unknown = [segment_id for segment_id, size in sizes.items() if size is None]
    if per_contact <= len(segments) + len(unknown):
        return ReadPlan(PER_CONTACT, per_contact, 1 + len(segments) + len(unknown), users=users, started_at=started_at)
    for segment_id in unknown:
        try:
            sizes[segment_id] = client.get_segment_count(
                segment_id, deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE)
            )
        except ContactNotFound:
            sizes[segment_id] = 0  # deleted since the list was read
        cache.set(_size_key(segment_id), sizes[segment_id], SIZE_CACHE_SECONDS)
    pages = sum(max(1, math.ceil(size / MEMBERSHIP_PAGE_LIMIT)) for size in sizes.values())
    scan_calls = 1 + len(unknown) + pages
    if per_contact <= pages:
        logger.info("Reads for %d contacts: one call each (%d) rather than %d pages", per_contact, per_contact, pages)
        return ReadPlan(PER_CONTACT, per_contact, scan_calls, users=users, started_at=started_at)
    plan = ReadPlan(SCAN, per_contact, scan_calls, segments=segments, users=users, started_at=started_at)
    plan.segments_by_key = scan(client, segments, readers)
    logger.info(
        "Reads for %d contacts: membership scans of %d segments (%d calls) rather than %d calls, one per contact",
        per_contact,
        len(segments),
        scan_calls,
        per_contact,
    )
    return plan


def _size_key(segment_id) -> str:
    return f"webhooks:segment-size:{int(segment_id)}"


def scan(client, segments: list[dict], readers) -> dict[str, list[dict]]:
    """Every segment's members, page by page; each reader's segments are those it was found in (none: in none).

    A member is matched by the delivery's own identifiers only, as Customer.io tells people apart: a delivery
    carrying a cio_id by it alone (the person's email may have changed), one carrying only an email by that email
    (compared case-insensitively, not NFC-folded), one by `id` by that. Never by the local user's stored email or
    cio_id: those may name another Customer.io person now. One member may serve several deliveries (one person
    named differently by two of them)."""
    by_email: dict[str, set[str]] = defaultdict(set)
    by_cio_id: dict[str, set[str]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for work in readers:
        kind, value = work.contact.kind, work.contact.value
        if work.contact.known_cio_id:
            by_cio_id[work.contact.known_cio_id].add(work.key)
        elif kind == ContactKind.EMAIL:
            by_email[customerio_email_key(value)].add(work.key)
        else:
            by_id[value].add(work.key)
    found: dict[str, list[dict]] = {work.key: [] for work in readers}
    for segment in segments:
        segment_id, size = int(segment["id"]), 0
        try:
            pages = client.iter_segment_member_pages(segment_id, deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE))
            for page in pages:
                size += len(page["identifiers"])
                for identifiers in page["identifiers"]:
                    for key in _matches(identifiers, by_email, by_cio_id, by_id):
                        if not found[key] or found[key][-1] is not segment:
                            found[key].append(segment)
        except ContactNotFound:
            pass  # deleted since the list was read: nobody is in it any more
        # A scan counts the segment as well as customer_count would: the next plan needs no size call for it.
        cache.set(_size_key(segment_id), size, SIZE_CACHE_SECONDS)
    return found


def _matches(identifiers: dict, by_email, by_cio_id, by_id) -> set[str]:
    keys = set(by_cio_id.get(identifiers.get("cio_id") or "", ()))
    email = identifiers.get("email")
    if email:
        keys |= by_email.get(customerio_email_key(email), set())
    person_id = identifiers.get("id")
    if person_id not in (None, ""):
        keys |= by_id.get(str(person_id), set())
    return keys


# Applying tags in bulk ---------------------------------------------------------------------------------------------


def bulk_update_tags(works, plan: ReadPlan, started: float) -> set[str]:
    """Tags of the scanned batch's update_tags contacts (known users, not staff, nothing owed) written in bulk, and
    their deliveries recorded, in one transaction holding the contacts' locks. Returns the keys of the contacts
    done; the caller processes the rest one by one."""
    if plan.method != SCAN:
        return set()
    chosen = {
        work.key: work
        for work in works
        if work.action == ActionName.UPDATE_TAGS
        and work.key in plan.users
        and not plan.users[work.key].protected
        and not plan.users[work.key].owed
        and identity_settled(work.contact, plan.users[work.key])
    }
    if not chosen:
        return set()
    with transaction.atomic():
        done = lock_and_hold(chosen, plan)
        if not done:
            return set()
        # A contact processed meanwhile for a delivery received after this batch was claimed (the synchronous
        # webhook, another worker) has tags read after every delivery here was received, maybe later than the
        # scan: they stay as they are.
        fresher = processed_since(done, plan.started_at)
        write_scanned_tags(done, plan, started, action=ActionName.UPDATE_TAGS, keep=fresher)
    return set(done)


def _still_as_planned(chosen: dict, plan: ReadPlan) -> dict:
    """The chosen contacts whose users still are as the plan read them, their rows locked until the commit."""
    by_pk = {plan.users[key].pk: key for key in chosen}
    fields = ("pk", "email_normalized", "cio_id", "is_staff", "is_superuser", "password_return_due")
    fields += ("welcome_email_due",)
    still = {}
    for chunk in batched(sorted(by_pk), CHUNK):
        rows = User.objects.select_for_update(no_key=True).filter(pk__in=chunk).values_list(*fields)
        for pk, normalized, cio_id, staff, superuser, return_due, welcome_due in rows:
            key = by_pk[pk]
            planned = plan.users[key]
            unchanged = (normalized, cio_id) == (planned.email_normalized, planned.cio_id)
            if unchanged and not (staff or superuser or return_due or welcome_due):
                still[key] = chosen[key]
    return still


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
    for chunk in batched(delivery_ids, CHUNK):
        rows = WebhookDelivery.objects.select_for_update().filter(pk__in=chunk, status=Status.PROCESSING)
        held.update(rows.values_list("pk", flat=True))
    return {key: work for key, work in chosen.items() if all(d.pk in held for d in work.deliveries)}


def write_scanned_tags(done: dict, plan: ReadPlan, started: float, *, action: str, updated_fields=None, keep=()):
    """Under the contacts' locks: the scan's tags for the users of `done` (but those in `keep`, left as they are),
    their "Loaded tags" lines and their deliveries recorded as succeeded with `action`'s result."""
    names = write_tags(done, plan, keep=keep)
    _record_done(done, plan, names, started, action, updated_fields or {})


def write_tags(done: dict, plan: ReadPlan, *, keep=()) -> dict[int, list[str]]:
    """Under the contacts' locks: the scan's tags for the users of `done` (but those in `keep`) and their "Loaded
    tags" lines. Returns each user's tag names, by user id."""
    user_ids = {plan.users[key].pk: key for key in done if key not in keep}
    by_segment: dict[int, set[int]] = {int(s["id"]): set() for s in plan.segments}
    for user_id, key in user_ids.items():
        for segment in plan.segments_by_key.get(key, []):
            by_segment[int(segment["id"])].add(user_id)
    outcome = apply_memberships(plan.segments, Memberships(set(user_ids), by_segment), log_changes=False)
    names = _tag_names([plan.users[key].pk for key in done])
    _log_loaded_tags(done, plan, names, outcome.changes)
    return names


def identity_settled(contact, user: LocalUser) -> bool:
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
    for chunk in batched(sorted(done), CHUNK):
        rows = WebhookDelivery.objects.filter(
            contact_key__in=chunk, received_at__gt=since, status__in=WebhookDelivery.FINISHED_OK
        )
        fresher.update(rows.values_list("contact_key", flat=True))
        fresher.update(ContactLock.objects.filter(key__in=chunk, read_at__gt=since).values_list("key", flat=True))
    return fresher


def _tag_names(user_ids: list[int]) -> dict[int, list[str]]:
    names: dict[int, list[tuple]] = {user_id: [] for user_id in user_ids}
    for chunk in batched(user_ids, CHUNK):
        rows = UserTag.objects.filter(user_id__in=chunk).values_list("user_id", "tag__name", "tag__segment_id")
        for user_id, name, segment_id in rows:
            names[user_id].append((name, segment_id))
    return {user_id: [name for name, _ in sorted(tags)] for user_id, tags in names.items()}


def _log_loaded_tags(done, plan: ReadPlan, names, changes) -> None:
    """The line a one-by-one update_tags writes, for each contact, naming its delivery."""
    tags = {tag.pk: str(tag) for tag in Tag.objects.all()}
    activities = []
    for key, work in done.items():
        user = plan.users[key]
        applied, removed = changes.get(user.pk, ([], []))
        activities.append(
            Activity(
                f"Loaded tags for {user.email}: {', '.join(names[user.pk]) or '(none)'}",
                user_id=user.pk,
                context={"applied": sorted(tags[pk] for pk in applied), "removed": sorted(tags[pk] for pk in removed)},
                delivery_id=work.leading.pk,
            )
        )
    log_activities(ActivityLog.Source.WEBHOOK, activities)


def _record_done(done, plan: ReadPlan, names, started: float, action: str, updated_fields: dict) -> None:
    successes = []
    for key, work in done.items():
        user = plan.users[key]
        result = {
            "status": "ok",
            "action": action,
            "user_id": user.pk,
            "created": False,
            "tags": names[user.pk],
            "updated_fields": updated_fields.get(key, []),
        }
        successes.append((work.deliveries, result, user.pk))
    record_successes(successes, duration_ms=int((time.monotonic() - started) * 1000))
