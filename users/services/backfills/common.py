"""What every backfill shares: its result, call counting, progress reporting, choosing users, and finding the local
user a Customer.io identifier names."""

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from cio.client import CustomerIOClient
from cio.transport import api_call_finished

from ...emails import normalize_email
from ...models import ActivityLog, User
from ..accounts import person_email

BACKFILL = ActivityLog.Source.BACKFILL


class BackfillError(Exception):
    """A backfill cannot run as asked (an unknown segment or user, nothing to resume...). The message is meant for
    the operator, on one line."""


class UnknownSegment(BackfillError):
    def __init__(self, segment_id: int):
        super().__init__(f"Customer.io has no segment {segment_id} (cio_sync_segments lists the segments as tags).")
        self.segment_id = segment_id


@dataclass
class BackfillResult:
    """What a backfill did, filled in as it goes, so that an interrupted run still reports what it finished."""

    command: str
    dry_run: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    app_calls: int = 0
    track_calls: int = 0
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)  # lines worth showing under the summary

    @property
    def calls(self) -> int:
        return self.app_calls + self.track_calls

    @property
    def is_empty(self) -> bool:
        """Nothing counted: the run stopped before it got to anybody."""
        return not (self.created + self.updated + self.unchanged + self.skipped + self.failed)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def counts(self) -> str:
        if self.dry_run:
            return (
                f"{self.created} would be created, {self.updated} would be updated, {self.unchanged} would be "
                f"unchanged, {self.skipped} would be skipped, {self.failed} would fail"
            )
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.skipped} skipped, {self.failed} failed"
        )

    def wording(self, real: str, dry: str) -> str:
        """`real` in a real run; `dry`, worded "would be …", in a dry run (which must not read as if it wrote)."""
        return dry if self.dry_run else real

    def summary(self) -> str:
        prefix = "Dry run (nothing written): " if self.dry_run else ""
        return (
            f"{prefix}{self.counts()}; Customer.io calls used: {self.calls} "
            f"({self.app_calls} App API, {self.track_calls} Track API); {self.seconds:.1f} s"
        )


@contextlib.contextmanager
def counting_calls(result: BackfillResult) -> Iterator[None]:
    """Count every HTTP attempt to Customer.io (retries included: they use the rate limit too) into `result`."""

    def count(sender, api, **kwargs):
        if api == "app":
            result.app_calls += 1
        else:
            result.track_calls += 1

    api_call_finished.connect(count, sender=CustomerIOClient, weak=False)
    try:
        yield
    finally:
        api_call_finished.disconnect(count, sender=CustomerIOClient)


class Progress:
    """Told how a backfill is getting on; shows nothing. The management commands pass one that draws a progress
    bar on a terminal, or writes a line now and then otherwise."""

    def stage(self, label: str, total: int | None = None, unit: str = "") -> None:
        """A new stage begins (ends the previous one)."""

    def advance(self, count: int = 1) -> None:
        """`count` more units of the current stage are done."""

    def close(self) -> None:
        """The backfill is over."""


def selected_users(emails: list[str] | None, result: BackfillResult) -> QuerySet:
    """The users a backfill works on: everyone (`emails` None) or the users with those emails. Staff and superuser
    accounts are left alone, as by the webhooks; they are counted as skipped."""
    users = User.objects.all()
    if emails is not None:
        wanted = {normalize_email(email) for email in emails}
        users = users.filter(email_normalized__in=wanted)
        found = set(users.values_list("email_normalized", flat=True))
        missing = sorted(wanted - found)
        if missing:
            raise BackfillError(f"No user with the email {', '.join(missing)}.")
    protected = users.filter(Q(is_staff=True) | Q(is_superuser=True)).count()
    if protected:
        result.skipped += protected
        result.notes.append(f"{protected} staff or superuser account(s) left alone, as the webhooks leave them.")
    return users.filter(is_staff=False, is_superuser=False)


def in_chunks(users: QuerySet, size: int) -> Iterator[list[User]]:
    """The users of a queryset, `size` at a time, in primary key order. Keyset pagination: every chunk is one
    indexed query however far into the table, and rows added meanwhile do not shift the pages."""
    last_pk = 0
    while True:
        chunk = list(users.filter(pk__gt=last_pk).order_by("pk")[:size])
        if not chunk:
            return
        yield chunk
        last_pk = chunk[-1].pk


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


IN_LIST_LIMIT = 1000  # values per IN (...) list: SQLite caps the parameters of one statement


def held_identities(emails: Iterable[str], cio_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """Of these normalized emails and Customer.io ids, the ones a site user already holds: (emails, cio_ids)."""
    held_emails, held_cio_ids = set(), set()
    for chunk in batched(sorted({email for email in emails if email}), IN_LIST_LIMIT):
        held_emails.update(User.objects.filter(email_normalized__in=chunk).values_list("email_normalized", flat=True))
    for chunk in batched(sorted({cio_id for cio_id in cio_ids if cio_id}), IN_LIST_LIMIT):
        held_cio_ids.update(User.objects.filter(cio_id__in=chunk).values_list("cio_id", flat=True))
    return held_emails, held_cio_ids


def person_key(person_or_identifiers: dict) -> str:
    """A person's identity across Customer.io answers: their cio_id (every answer carries it), else their email."""
    identifiers = person_or_identifiers.get("identifiers") or person_or_identifiers
    return identifiers.get("cio_id") or normalize_email(identifiers.get("email") or "")


def lookup_identifier(identifiers: dict) -> tuple[str, str]:
    """How to ask for a membership entry's attributes: (id_type, value). By email when the membership gives one;
    by cio_id otherwise (people in workspaces that do not identify by email)."""
    if identifiers.get("email"):
        return "email", identifiers["email"]
    if identifiers.get("cio_id"):
        return "cio_id", identifiers["cio_id"]
    return "id", str(identifiers.get("id") or "")


def match_people(people: list[dict]) -> tuple[dict[str, User], set[str]]:
    """The existing users of these people, by person_key — matched by cio_id, then by email, as the webhooks do —
    and the Customer.io ids that users hold among theirs."""
    cio_ids = [cio_id for person in people if (cio_id := (person.get("identifiers") or {}).get("cio_id"))]
    emails = {normalize_email(email): person_key(person) for person in people if (email := person_email(person))}
    found: dict[str, User] = {}
    by_cio_id = User.objects.select_related("role").filter(cio_id__in=cio_ids)
    for user in by_cio_id:
        found[user.cio_id] = user
    for user in User.objects.select_related("role").filter(email_normalized__in=list(emails)):
        found.setdefault(emails[user.email_normalized], user)
    return found, {user.cio_id for user in by_cio_id}
