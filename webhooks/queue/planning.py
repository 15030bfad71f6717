"""Planned reads for a claimed batch: the fewest App API calls that give every contact its segments.

A worker that claims many waiting deliveries (a broadcast: one webhook per person entering a big segment) can read
each contact's segments with one call per contact, or read every segment's membership with a few pages (up to
30,000 people a page) and find its contacts in them — the backfills' way. The planner counts both: per contact, one
call for each contact that will load tags; by scans, the segment list, each segment's pages (from its size, which
Customer.io reports, or a scan counted, and which is reused for a minute) and the size calls still to make. It picks
the cheaper.

Every read is made after the batch was claimed, so after each of its deliveries was received: a delivery that
arrives during a scan is not in the batch and waits for a later read (settling lets a burst arrive first).

The scan's segments are written in bulk where they can be (bulk_tags, bulk_updates, bulk_adds); the other contacts
are processed one by one, with the segments the scan found.
"""

import enum
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from cio import get_client
from cio.app_api import MEMBERSHIP_PAGE_LIMIT
from cio.client import deadline_in
from cio.errors import ContactNotFound
from users.emails import customerio_email_key, normalize_email
from users.models import Tag, User
from users.services.backfills.common import IN_LIST_LIMIT, batched
from users.services.contacts import ContactKind

from ..actions import ActionName
from .claiming import ContactWork

logger = logging.getLogger(__name__)

SIZE_CACHE_SECONDS = 60


class ReadMethod(enum.StrEnum):
    PER_CONTACT = "per_contact"
    SCAN = "scan"


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
    method: ReadMethod
    per_contact_calls: int
    scan_calls: int | None  # None: not worked out (per contact was plainly cheaper)
    segments: list[dict] = field(default_factory=list)  # the segment list read for a scan
    # contact key -> the contact's segments, for every contact that loads tags (a scan's answer)
    segments_by_key: dict[str, list[dict]] = field(default_factory=dict)
    users: dict[str, LocalUser] = field(default_factory=dict)  # contact key -> local user
    # Before any read of the plan, after the batch was claimed.
    started_at: datetime = field(default_factory=timezone.now)

    def segments_for(self, work: ContactWork) -> list[dict] | None:
        return self.segments_by_key.get(work.key) if self.method == ReadMethod.SCAN else None


def local_users(works: list[ContactWork]) -> dict[str, LocalUser]:
    """The local user of each contact named by email or cio_id, a few queries for the whole batch."""
    by_email = {normalize_email(w.contact.value): w.key for w in works if w.contact.kind == ContactKind.EMAIL}
    # A contact carrying a cio_id is found by it first (the later lookup wins), as users.services.contacts does.
    by_cio_id = {w.contact.known_cio_id: w.key for w in works if w.contact.known_cio_id}
    found: dict[str, LocalUser] = {}
    fields = ("pk", "email", "email_normalized", "cio_id", "is_staff", "is_superuser", "password_return_due")
    fields += ("welcome_email_due",)
    for lookup, keys in (("email_normalized", by_email), ("cio_id", by_cio_id)):
        for chunk in batched(sorted(keys), IN_LIST_LIMIT):
            for row in User.objects.filter(**{f"{lookup}__in": chunk}).values_list(*fields):
                pk, email, normalized, cio_id, staff, superuser, return_due, welcome_due = row
                key = keys[normalized if lookup == "email_normalized" else cio_id]
                found[key] = LocalUser(pk, email, normalized, cio_id, staff or superuser, return_due or welcome_due)
    return found


def loads_tags(work: ContactWork, users: dict[str, LocalUser]) -> bool:
    """Whether processing the contact reads their segments: an `add`, or a known user (not a staff account)."""
    user = users.get(work.key)
    if user is not None and user.protected:
        return False
    return work.action == ActionName.ADD or user is not None or work.contact.kind == ContactKind.ID


def plan_reads(works: list[ContactWork]) -> ReadPlan:
    """Choose per-contact reads or scans for the batch and, for scans, make them. Raises CustomerIOError when a
    read the scan needs fails (the batch is retried later)."""
    started_at = timezone.now()
    users = local_users(works)
    readers = [work for work in works if loads_tags(work, users)]
    per_contact = len(readers)
    # Every segment costs at least one page: with no more contacts than that, one call each is never worse.
    if per_contact <= 1 + Tag.objects.count():
        return ReadPlan(ReadMethod.PER_CONTACT, per_contact, None, users=users, started_at=started_at)
    client = get_client()
    segments = client.list_segments(deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE))
    sizes = {int(s["id"]): cache.get(_size_key(s["id"])) for s in segments}
    unknown = [segment_id for segment_id, size in sizes.items() if size is None]
    if per_contact <= len(segments) + len(unknown):
        return ReadPlan(
            ReadMethod.PER_CONTACT, per_contact, 1 + len(segments) + len(unknown), users=users, started_at=started_at
        )
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
        return ReadPlan(ReadMethod.PER_CONTACT, per_contact, scan_calls, users=users, started_at=started_at)
    plan = ReadPlan(ReadMethod.SCAN, per_contact, scan_calls, segments=segments, users=users, started_at=started_at)
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


def scan(client, segments: list[dict], readers: list[ContactWork]) -> dict[str, list[dict]]:
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
