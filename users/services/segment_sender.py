"""Sending the outbox of tag changes (segment_changes.py) to Customer.io's manual segments.

The background worker sends what waits, all users together: per segment and action, ids grouped by id_type (cio_id
when the site knows it, else the email once Customer.io confirmed the person exists), up to 1,000 per Track API
call (POST /api/v1/segments/{id}/add_customers or remove_customers). Customer.io creates a person for an id it does
not know, so people it does not know are never sent. A failed call leaves its rows to be retried with backoff; a
worker that dies leaves them claimed until the lease runs out.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from cio import get_client
from cio.client import deadline_in
from cio.errors import CustomerIOError
from cio.track_api import SEGMENT_CHANGE_LIMIT

from ..emails import normalize_email
from ..models import ActivityLog, SegmentChange, Tag, User
from .activity import Activity, log_activities
from .outbox_retries import retry_later

logger = logging.getLogger(__name__)

Action = SegmentChange.Action
# Rows claimed by one pass: 10,000 changes are 10 add_customers calls at most per segment and action.
CLAIM_LIMIT = 10_000
LOOKUP_LIMIT = 100  # people per attributes call


def due_changes(now):
    """Unsent changes whose time came and that no live worker holds. A change waits while an earlier change of the
    same user and tag is held by a worker or waits for its retry: Customer.io must get them in order (an add
    overtaken by a later remove would leave the person in the segment)."""
    claimable = Q(sent_at__isnull=True, next_attempt_at__lte=now) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    earlier_blocked = SegmentChange.objects.filter(
        user_id=OuterRef("user_id"), tag_id=OuterRef("tag_id"), id__lt=OuterRef("id"), sent_at__isnull=True
    ).exclude(claimable)
    return SegmentChange.objects.filter(claimable).filter(~Exists(earlier_blocked))


@dataclass
class SendSummary:
    calls: int = 0
    sent: int = 0  # rows done
    failed: int = 0  # rows left for a retry
    skipped: int = 0  # rows dropped: person unknown to Customer.io, or not a manual segment
    errors: list[str] = field(default_factory=list)


def send_due() -> SendSummary:
    """Send every change that is due, in as few calls as Customer.io allows. Never raises for Customer.io trouble:
    failed rows wait for their next attempt."""
    summary = SendSummary()
    settled_before = timezone.now() - timedelta(seconds=settings.TAG_CHANGE_SETTLE_SECONDS)
    SegmentChange.objects.filter(sent_at__lt=settled_before).delete()
    while True:
        rows = _claim()
        if not rows:
            return summary
        _send(rows, summary)


def _claim() -> list[SegmentChange]:
    now = timezone.now()
    due = due_changes(now)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("id").values_list("id", flat=True)[:CLAIM_LIMIT])
        if not ids:
            return []
        claimed_until = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
        SegmentChange.objects.filter(id__in=ids).update(claimed_until=claimed_until)
    return list(SegmentChange.objects.filter(id__in=ids).select_related("tag", "user").order_by("id"))


def _send(rows: list[SegmentChange], summary: SendSummary) -> None:
    # The latest change of each (user, tag) is the one that counts; the others go out with it, as done.
    latest: dict[tuple[int, int], SegmentChange] = {}
    covered: dict[tuple[int, int], list[int]] = defaultdict(list)
    for row in rows:
        latest[(row.user_id, row.tag_id)] = row
        covered[(row.user_id, row.tag_id)].append(row.pk)
    client = get_client()
    skipped: list[tuple[SegmentChange, str]] = []

    tags = {row.tag_id: row.tag for row in latest.values()}
    try:
        _learn_kinds([tag for tag in tags.values() if not tag.kind])
    except CustomerIOError as exc:
        _retry([pk for pks in covered.values() for pk in pks], str(exc), summary)
        return
    not_manual = {pk for pk, tag in tags.items() if tag.kind != Tag.Kind.MANUAL}

    users = {row.user_id: row.user for row in latest.values()}
    try:
        identities = _identities(client, list(users.values()))
    except CustomerIOError as exc:
        _retry([pk for pks in covered.values() for pk in pks], str(exc), summary)
        return

    groups: dict[tuple[int, str, str], list[tuple[str, list[int]]]] = defaultdict(list)
    for key, row in latest.items():
        if row.tag_id in not_manual:
            skipped.append((row, f'"{row.tag}" is not a manual segment in Customer.io'))
            continue
        identity = identities.get(row.user_id)
        if identity is None:
            skipped.append((row, f"{row.user.email} is not a person in Customer.io"))
            continue
        id_type, identifier = identity
        groups[(row.tag.segment_id, row.action, id_type)].append((identifier, covered[key]))

    for (segment_id, action, id_type), members in groups.items():
        rows_by_id: dict[str, list[int]] = defaultdict(list)
        for identifier, row_pks in members:
            rows_by_id[identifier].extend(row_pks)
        ids = list(rows_by_id)
        change = client.add_to_segment if action == Action.ADD else client.remove_from_segment
        # One call per SEGMENT_CHANGE_LIMIT people, each call's rows done as soon as it succeeds: a failure halfway
        # leaves only the rest for the retry.
        for start in range(0, len(ids), SEGMENT_CHANGE_LIMIT):
            chunk = ids[start : start + SEGMENT_CHANGE_LIMIT]
            try:
                summary.calls += change(
                    segment_id, chunk, id_type, deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE)
                )
            except CustomerIOError as exc:
                _retry([pk for identifier in ids[start:] for pk in rows_by_id[identifier]], str(exc), summary)
                break
            pks = [pk for identifier in chunk for pk in rows_by_id[identifier]]
            SegmentChange.objects.filter(id__in=pks).update(sent_at=timezone.now(), claimed_until=None, last_error="")
            summary.sent += len(pks)

    if skipped:
        _skip(skipped, covered, summary)


def _learn_kinds(tags: list[Tag]) -> None:
    if not tags:
        return
    client = get_client()
    for tag in tags:
        segment = client.get_segment(tag.segment_id, deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE))
        tag.kind = Tag.kind_from_segment_type(segment.get("type"))
        if tag.kind:
            Tag.objects.filter(pk=tag.pk).update(kind=tag.kind)


def _identities(client, users: list[User]) -> dict[int, tuple[str, str]]:
    """(id_type, identifier) of each user Customer.io knows: by cio_id when the site has it; else the email, once
    an attributes call (100 people each) showed the person exists. Their cio_id is kept for next time."""
    found = {user.pk: ("cio_id", user.cio_id) for user in users if user.cio_id}
    by_email = {normalize_email(user.email): user for user in users if not user.cio_id and user.email}
    emails = list(by_email)
    for start in range(0, len(emails), LOOKUP_LIMIT):
        people = client.get_attributes_batch(
            emails[start : start + LOOKUP_LIMIT], "email", deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE)
        )
        for person in people:
            identifiers = person.get("identifiers") or {}
            email = identifiers.get("email") or (person.get("attributes") or {}).get("email")
            user = by_email.get(normalize_email(email or ""))
            if user is None:
                continue
            found[user.pk] = ("email", user.email)
            cio_id = identifiers.get("cio_id") or person.get("cio_id")
            if cio_id and not User.objects.filter(cio_id=cio_id).exists():
                User.objects.filter(pk=user.pk, cio_id__isnull=True).update(cio_id=cio_id)
    return found


def _retry(pks: list[int], error: str, summary: SendSummary) -> None:
    summary.failed += len(pks)
    summary.errors.append(error)
    logger.warning("Sending %d tag changes to Customer.io failed, will retry: %s", len(pks), error)
    retry_later(SegmentChange.objects.filter(id__in=pks), error)


def _skip(skipped: list[tuple[SegmentChange, str]], covered, summary: SendSummary) -> None:
    # Nothing to send, nothing to protect: the rows go, the activity log keeps the reason.
    pks = [pk for row, _ in skipped for pk in covered[(row.user_id, row.tag_id)]]
    SegmentChange.objects.filter(id__in=pks).delete()
    summary.skipped += len(pks)
    log_activities(
        ActivityLog.Source.CUSTOMERIO,
        [
            Activity(
                f"Tag change not sent to Customer.io: {reason}",
                level=ActivityLog.Level.NOTICE,
                user=row.user,
                context={"tag": str(row.tag), "segment_id": row.tag.segment_id, "action": row.action},
            )
            for row, reason in skipped
        ],
    )
