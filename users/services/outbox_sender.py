"""Sending the outbox of profile changes, events and login links (outbox.py) to Customer.io's Track API.

The background worker sends what waits, all people together, in /api/v2/batch requests (under 500 KB each, every
entry under 32 KB: cio.track_api splits them). A person's profile rows become one identify entry with their values as
they are now (the latest wins, however many changes were queued); a login link joins that entry; each event is its
own entry, with the ULID Customer.io deduplicates by. A person is named by cio_id when the site knows it, else by the
address Customer.io knows: after an email change made on the site, the old one is looked up (one App API call per
100 such people) so the person's email changes instead of a second person being made.

An entry Customer.io refuses as invalid, or one too large to send, is dropped with a log line and an activity line
(retrying would never succeed); a request that fails as a whole leaves its rows to be retried with backoff; a worker
that dies leaves its rows claimed until the lease runs out, then any worker takes them.
"""

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from cio import get_client
from cio.client import deadline_in
from cio.errors import CustomerIOError, NotConfigured
from cio.track_api import identify_operation
from settings_app.models import WebhookSettings

from ..emails import normalize_email
from ..models import ActivityLog, OutboxEntry, User
from .activity import Activity, log_activities
from .attributes import push_mappings, user_attributes
from .login_links import LoginLinkRefused, login_url
from .outbox_retries import retry_later

logger = logging.getLogger(__name__)

Kind = OutboxEntry.Kind
CREATED = OutboxEntry.CREATED
# Rows claimed by one pass: 10,000 profile changes are a handful of batch requests.
CLAIM_LIMIT = 10_000
LOOKUP_LIMIT = 100  # people per attributes call


def due_entries(now=None):
    """Rows whose time came and that no live worker holds."""
    now = now or timezone.now()
    return OutboxEntry.objects.filter(next_attempt_at__lte=now).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )


@dataclass
class SendSummary:
    requests: int = 0
    sent: int = 0  # rows done
    failed: int = 0  # rows left for a retry
    dropped: int = 0  # rows Customer.io can never take (too large, invalid), or no longer to be sent
    errors: list[str] = field(default_factory=list)


@dataclass
class _Operation:
    body: dict
    user: User
    row_ids: list[int]
    what: str  # for log lines: "profile", "event course_completed"
    identifies: bool = False


def send_due() -> SendSummary:
    """Send every row that is due, in as few requests as Customer.io allows. Never raises for Customer.io trouble."""
    summary = SendSummary()
    while rows := _claim():
        _send(rows, summary)
    return summary


def _claim() -> list[OutboxEntry]:
    now = timezone.now()
    due = due_entries(now)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("id").values_list("id", flat=True)[:CLAIM_LIMIT])
        if not ids:
            return []
        OutboxEntry.objects.filter(id__in=ids).update(
            claimed_until=now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
        )
    return list(OutboxEntry.objects.filter(id__in=ids).select_related("user", "user__role").order_by("id"))


def _send(rows: list[OutboxEntry], summary: SendSummary) -> None:
    client = get_client()
    site_settings = WebhookSettings.cached()
    # One deadline for the pass, well inside the rows' lease, so no other worker takes them over meanwhile.
    deadline = deadline_in(min(settings.WEBHOOK_TASK_DEADLINE, settings.WEBHOOK_LEASE_SECONDS / 2))
    by_user: dict[int, list[OutboxEntry]] = defaultdict(list)
    for row in rows:
        by_user[row.user_id].append(row)
    identities, lookup_error = _identities(client, by_user, deadline)
    operations: list[_Operation] = []
    dropped: list[tuple[User, list[int], str]] = []
    nothing_to_send: list[int] = []
    for user_id, user_rows in by_user.items():
        user = user_rows[0].user
        if user_id not in identities:  # their old address could not be looked up: later
            _retry([row.pk for row in user_rows], lookup_error, summary)
            continue
        try:
            built = _operations(user, user_rows, identities[user_id], site_settings, dropped)
        except Exception as exc:
            # One person's rows must not hold the whole outbox: they wait for a retry, the others go.
            logger.exception("The outbox entries of user %s could not be prepared", user_id)
            _retry([row.pk for row in user_rows], f"could not be prepared: {type(exc).__name__}", summary)
            continue
        operations += built
        sent = {pk for op in built for pk in op.row_ids} | {pk for _, pks, _ in dropped for pk in pks}
        nothing_to_send += [row.pk for row in user_rows if row.pk not in sent]
    if nothing_to_send:  # e.g. a last_login change no mapping pushes any more
        OutboxEntry.objects.filter(id__in=nothing_to_send).delete()
        summary.sent += len(nothing_to_send)
    if operations:
        _deliver(client, operations, summary, deadline)
    if dropped:
        _drop(dropped, summary)


def _operations(user: User, user_rows, identifiers: dict, site_settings, dropped: list) -> list[_Operation]:
    """The batch entries for one person: one identify with the profile fields that changed (their values now), one
    for a login link, and one per event."""
    if (user.is_staff or user.is_superuser) and not site_settings.push_staff:
        dropped.append((user, [row.pk for row in user_rows], "staff accounts are not sent to Customer.io"))
        return []
    operations = []
    profile = [row for row in user_rows if row.kind == Kind.PROFILE]
    if profile:
        fields = {name for row in profile for name in row.fields}
        # A user made on the site is a new person for Customer.io, unless the site knows their cio_id by now: then
        # Customer.io has them already, and only the pushed fields go (not the email, which it may have changed).
        created = CREATED in fields and not user.cio_id
        everything = CREATED in fields
        mappings = [m for m in push_mappings() if m.user_field != "email" and (everything or m.user_field in fields)]
        attributes = user_attributes(user, mappings)
        # The email is the person's identity: sent when it changed here (or with a new person), never otherwise, or
        # an unrelated change (a login) could put back an address Customer.io has changed since.
        if created or "email" in fields:
            attributes["email"] = user.email
        if attributes:
            # Only a user created on the site may create a person: a change never brings back one Customer.io deleted.
            body = identify_operation(identifiers, attributes, update_only=not created)
            operations.append(_Operation(body, user, [row.pk for row in profile], "profile", identifies=True))
    links = [row for row in user_rows if row.kind == Kind.LOGIN_LINK]
    if links:
        # An entry of its own: a profile Customer.io refuses must not take the link with it.
        try:
            attributes = {site_settings.return_login_link_field.strip(): _link(user, site_settings)}
        except LoginLinkRefused as exc:
            dropped.append((user, [row.pk for row in links], f"no login link returned: {exc}"))
        else:
            body = identify_operation(identifiers, attributes, update_only=True)
            operations.append(_Operation(body, user, [row.pk for row in links], "login link"))
    for row in user_rows:
        if row.kind == Kind.EVENT:
            operations.append(_Operation(_event_operation(identifiers, row), user, [row.pk], f"event {row.event_name}"))
    return operations


def _link(user: User, site_settings: WebhookSettings) -> str:
    if not site_settings.returns_login_links:
        raise LoginLinkRefused("Return a login link is off")
    return login_url(user)


def _event_operation(identifiers: dict, row: OutboxEntry) -> dict:
    return {
        "type": "person",
        "identifiers": identifiers,
        "action": "event",
        "name": row.event_name,
        "id": row.event_id,
        "timestamp": int(row.created_at.timestamp()),
        "attributes": row.event_data or {},
    }


def _deliver(client, operations: list[_Operation], summary: SendSummary, deadline: float | None) -> None:
    started = time.monotonic()
    try:
        outcome = client.batch([op.body for op in operations], deadline=deadline)
    except CustomerIOError as exc:  # credentials missing or refused: nothing was sent
        _retry([pk for op in operations for pk in op.row_ids], str(exc), summary)
        return
    summary.requests += outcome.requests
    failures = {failure.index: failure for failure in outcome.failures}
    done = [op for index, op in enumerate(operations) if index not in failures]
    retry = [(operations[index], failure.reason) for index, failure in failures.items() if failure.retryable]
    refused = [(operations[index], failure.reason) for index, failure in failures.items() if not failure.retryable]

    OutboxEntry.objects.filter(id__in=[pk for op in done for pk in op.row_ids]).delete()
    summary.sent += sum(len(op.row_ids) for op in done)
    pushed = {op.user.pk for op in done if op.identifies}
    if pushed:
        User.objects.filter(pk__in=pushed).update(cio_pushed_at=timezone.now())
    if retry:
        reasons = "; ".join(sorted({reason for _, reason in retry}))
        _retry([pk for op, _ in retry for pk in op.row_ids], reasons, summary)
    for op, reason in refused:
        # WARNING, once per entry: the site owner must hear of it, and it will not be tried again.
        logger.warning("Customer.io refused the %s of user %s, not sent again: %s", op.what, op.user.pk, reason)
    if refused:
        _drop(
            [(op.user, op.row_ids, f"Customer.io refused the {op.what}: {reason}") for op, reason in refused], summary
        )
    logger.info(
        "Sent %d outbox entries to Customer.io in %d requests (%.2f s): %d to retry, %d refused",
        len(done),
        outcome.requests,
        time.monotonic() - started,
        len(retry),
        len(refused),
    )


def _identities(client, by_user: dict[int, list[OutboxEntry]], deadline) -> tuple[dict[int, dict], str]:
    """How each person is named in this batch: {"cio_id": …} when the site knows it; else, after an email change
    made on the site, the cio_id Customer.io has for the old address (looked up, and kept for next time); else the
    email. People whose lookup failed are left out, with the error, for their rows to be retried."""
    identities: dict[int, dict] = {}
    moved: dict[str, User] = {}
    for user_rows in by_user.values():
        user = user_rows[0].user
        if user.cio_id:
            identities[user.pk] = {"cio_id": user.cio_id}
            continue
        identities[user.pk] = {"email": user.email}
        # The first change queued names the address Customer.io still has.
        previous = next((row.previous_email for row in user_rows if row.previous_email), "")
        if previous and normalize_email(previous) != user.email_normalized:
            moved[normalize_email(previous)] = user
    emails, error = list(moved), ""
    for start in range(0, len(emails), LOOKUP_LIMIT):
        chunk = emails[start : start + LOOKUP_LIMIT]
        try:
            people = client.get_attributes_batch(chunk, "email", deadline=deadline)
        except NotConfigured:
            # Without an App API key nobody can be looked up: they are named by their new email (docs/sync.md).
            break
        except CustomerIOError as exc:
            error = str(exc)
            for email in emails[start:]:
                identities.pop(moved[email].pk, None)
            break
        found = {}
        for person in people:
            identifiers = person.get("identifiers") or {}
            email = identifiers.get("email") or (person.get("attributes") or {}).get("email") or ""
            cio_id = identifiers.get("cio_id") or person.get("cio_id")
            if cio_id and normalize_email(email) in moved:
                found[cio_id] = moved[normalize_email(email)]
        held = set(User.objects.filter(cio_id__in=list(found)).values_list("cio_id", flat=True))
        for cio_id, user in found.items():
            if cio_id in held:
                continue  # another site user is that person: named by email, as before
            identities[user.pk] = {"cio_id": cio_id}
            User.objects.filter(pk=user.pk, cio_id__isnull=True).update(cio_id=cio_id)
            user.cio_id = cio_id
    return identities, error


def _retry(pks: list[int], error: str, summary: SendSummary) -> None:
    summary.failed += len(pks)
    summary.errors.append(error)
    logger.warning("Sending %d outbox entries to Customer.io failed, will retry: %s", len(pks), error)
    retry_later(OutboxEntry.objects.filter(id__in=pks), error)


def _drop(dropped: list[tuple[User, list[int], str]], summary: SendSummary) -> None:
    """Rows that will never be sent: they go, the activity log keeps why."""
    OutboxEntry.objects.filter(id__in=[pk for _, pks, _ in dropped for pk in pks]).delete()
    summary.dropped += sum(len(pks) for _, pks, _ in dropped)
    log_activities(
        ActivityLog.Source.CUSTOMERIO,
        [
            Activity(f"Not sent to Customer.io: {reason}", level=ActivityLog.Level.NOTICE, user=user)
            for user, _, reason in dropped
        ],
    )
