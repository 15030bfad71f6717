"""`cio_import_users`: every member of a Customer.io segment becomes a user, under the `add` webhook's account
rules, in bulk and resumably.

Calls: one for the segment list, one per membership page (up to 30,000 members), one attributes call per 100
members, the membership scans that give everyone's tags (a few per segment), and — only when Return Password is on
with a field — one /api/v2/batch request per few hundred returned passwords.

A run's position (membership page and offset) and counts live in an ImportRun row, saved in the same transaction as
the users of each 100 members, so an interrupted run resumes exactly where it stopped (`--resume`), and running the
import again updates the users it made instead of making them twice. This module runs the import: it reads the
members, step by step, and finishes with their tags and the passwords still owed; import_steps.py writes each step's
users and import_runs.py keeps the run's row.
"""

import logging
from collections.abc import Iterator

from django.db import DatabaseError, connection

from cio import get_client
from cio.app_api import ATTRIBUTES_BATCH_LIMIT
from cio.client import CustomerIOClient
from cio.errors import ContactNotFound, CustomerIOError

from ...models import ImportRun, User
from ..accounts import AccountRules, BatchPasswordReturns, NoPasswordSummary, generate_password
from ..activity import log_activities
from ..password_hashing import PasswordHashPool
from ..welcome import send_due_welcome_email
from .common import (
    BACKFILL,
    BackfillError,
    BackfillResult,
    Progress,
    UnknownSegment,
    counting_calls,
    in_chunks,
    lookup_identifier,
)
from .id_sets import IdSet
from .import_runs import COUNTS, RunRecord, open_run
from .import_steps import StepWriter
from .membership_scan import scan_segments
from .prefetch import read_ahead
from .tag_writes import write_memberships

logger = logging.getLogger(__name__)

Status = ImportRun.Status
MEMBERS_PER_STEP = ATTRIBUTES_BATCH_LIMIT
# Steps whose people are read from Customer.io ahead of the one being written: the reads keep to the rate limit
# while the writing goes on (prefetch.read_ahead).
STEPS_AHEAD = 3
# Users owed a password from an earlier run, read and settled this many at a time.
OWED_CHUNK = 1000
# Users created by a run (all its invocations) from which PostgreSQL's statistics of the users table are renewed
# before the tag scan.
ANALYZE_FROM_CREATED = 10_000


def import_users(
    result: BackfillResult,
    *,
    segment_id: int,
    role: str | None = None,
    send_notification: bool | None = None,
    limit: int | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> ImportRun:
    """Import the members of `segment_id` (at most `limit` of them in this call). `role` and `send_notification`
    are the `add` webhook's role= and send_notification=; a resumed run keeps the ones it was started with."""
    progress = progress or Progress()
    client = get_client()
    rules = AccountRules.load()
    client.require_credentials(app=True, track=rules.returns_passwords and not result.dry_run)
    if role:
        found, why_not = rules.assignable_role(role)
        if found is None:
            raise BackfillError(why_not)
    with counting_calls(result):
        progress.stage("Reading segments")
        segments = client.list_segments()
        if not any(int(segment["id"]) == segment_id for segment in segments):
            raise UnknownSegment(segment_id)
        run = open_run(segment_id, role, send_notification, resume=resume, dry_run=result.dry_run)
        importer = _Importer(client, rules, run, result, progress)
        try:
            importer.import_members(limit)
            importer.finish(segments)
        except KeyboardInterrupt:
            importer.stop(Status.INTERRUPTED, "Interrupted.")
            raise
        except CustomerIOError as exc:
            importer.stop(Status.FAILED, str(exc))
            raise
        except BaseException as exc:
            importer.stop(Status.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            importer.close()
    return run


class _Importer:
    def __init__(self, client: CustomerIOClient, rules: AccountRules, run: ImportRun, result, progress: Progress):
        self.client = client
        self.run = run
        self.record = RunRecord(run, result)
        self.result = result
        self.dry_run = result.dry_run
        self.progress = progress
        self.pool = PasswordHashPool()
        self.returns = BatchPasswordReturns(
            client, rules, self.pool, source=BACKFILL, on_failed=self._count_failed, heartbeat=self.record.beat
        )
        self.steps = StepWriter(rules, run, self.record, result, self.pool)
        self.members_done = 0
        self.membership_read = False
        # New users without a usable password: one line for the invocation, not one per user.
        self.no_password = NoPasswordSummary()

    def _count_failed(self, number: int) -> None:
        self.result.failed += number

    # Members ----------------------------------------------------------------------------------------------------

    def import_members(self, limit: int | None) -> None:
        label = self.result.wording(
            f"Importing members of segment {self.run.segment_id}",
            f"Members of segment {self.run.segment_id} that would be imported",
        )
        self.progress.stage(label, total=limit, unit="members")
        try:
            for members, position, people in read_ahead(lambda: self._member_steps(limit), STEPS_AHEAD):
                self._import_step(members, position, people)
                self.progress.advance(len(members))
                self.returns.flush()
        except ContactNotFound:
            raise UnknownSegment(self.run.segment_id) from None  # deleted since the segment list was read

    def _member_steps(self, limit: int | None) -> Iterator[tuple[list[dict], tuple[str, int], list[dict]]]:
        """On the reading thread: the members still to import, 100 at a time, each step with the position to save
        once it is done (the start cursor of its membership page and how many of that page's members are done then)
        and the people Customer.io returns for them."""
        client = get_client()  # the thread's own
        cursor, skip = self.run.cursor, self.run.page_offset
        remaining = limit
        for page in client.iter_segment_member_pages(self.run.segment_id, start=cursor):
            members = page["identifiers"]
            for offset in range(skip, len(members), MEMBERS_PER_STEP):
                step = members[offset : offset + MEMBERS_PER_STEP]
                if remaining is not None:
                    step = step[:remaining]
                    remaining -= len(step)
                yield step, (cursor, offset + len(step)), _fetch_people(client, step)
                if remaining == 0 and (offset + len(step) < len(members) or page["next"]):
                    # Stopped at --limit with members left (the next page is --resume's to read): paused.
                    return
            cursor, skip = page["next"], 0
        self.membership_read = True

    def _import_step(self, members: list[dict], position: tuple[str, int], people: list[dict]) -> None:
        mapped_passwords = self.steps.hash_mapped_passwords(people)
        counted_before = {name: getattr(self.result, name) for name in COUNTS}
        done_before = self.members_done
        try:
            written = self.steps.write(members, people, position, done_before + len(members), mapped_passwords)
        except BaseException:
            if not self.dry_run and self.record.saved(done_before + len(members)):
                # Interrupted after the step's commit (Ctrl-C or SIGTERM during its on-commit signals, say): it was
                # written, so its counts stand and the run's row must say so too.
                self.members_done = done_before + len(members)
            else:
                # Nothing of the step was written: it is not counted either.
                for name, value in counted_before.items():
                    setattr(self.result, name, value)
            raise
        self.members_done += len(members)
        for account in written.created:  # counted once the step is written
            self.no_password.count(account)
        if self.dry_run:
            return
        self.returns.queue(written.owing)
        # Users who are owed no password get their welcome email now; the others once it is returned.
        for user in written.welcome:
            send_due_welcome_email(user, BACKFILL)

    # The end ----------------------------------------------------------------------------------------------------

    def finish(self, segments: list[dict]) -> None:
        """Tags for the segment's users from membership scans, then the passwords still owed to its members."""
        if self.run.created >= ANALYZE_FROM_CREATED and not self.dry_run:
            _renew_statistics()
        # The segment is read again rather than taken from the run's own pages: a long run's early pages no longer
        # say who is in it, and a tag removed meanwhile (someone left; a webhook reloaded their tags) must stay off.
        memberships = scan_segments(
            segments,
            User.objects.filter(is_staff=False, is_superuser=False),
            scope_segment=self.run.segment_id,
            progress=self.progress,
        )
        if not self.membership_read:
            # Stopped at --limit: the members not imported yet keep their tags until --resume gets to them.
            memberships = memberships.only(self.steps.imported_ids)
        self.progress.stage(self.result.wording("Writing tags", "Tags that would be written"))
        outcome = write_memberships(segments, memberships, dry_run=self.dry_run)
        self.result.notes.append(
            self.result.wording(
                f"Tags: changed for {outcome.changed} user(s), unchanged for {outcome.unchanged}.",
                f"Tags: would be changed for {outcome.changed} user(s), would be unchanged for {outcome.unchanged}.",
            )
        )
        if not self.dry_run:
            self._return_owed(memberships.covered)
        self.record.close(Status.FINISHED if self.membership_read else Status.PAUSED, "", self.members_done)

    def _return_owed(self, members: IdSet) -> None:
        """Passwords owed to the segment's users from an earlier run (Customer.io refused them, or it stopped before
        returning): fresh ones, a chunk of users at a time."""
        owed = User.objects.filter(password_return_due=True, is_staff=False, is_superuser=False).order_by("pk")
        staged = False
        for chunk in in_chunks(owed, OWED_CHUNK):
            self.returns.queue([(user, generate_password()) for user in chunk if user.pk in members])
            if self.returns.waiting_count() and not staged:
                self.progress.stage("Returning generated passwords", unit="passwords")
                staged = True
            self.returns.flush(everything=True, progress=self.progress)

    def stop(self, status: str, error: str) -> None:
        if not self.dry_run:
            self.record.close(status, error, self.members_done)

    def close(self) -> None:
        """After the run, finished or not: the summary of the users it made without a usable password."""
        self.pool.close()
        summary = self.no_password.activity()
        if summary is None or self.dry_run:
            return
        summary.context["import_run"] = self.run.pk
        try:
            log_activities(BACKFILL, [summary])
        except DatabaseError:
            # Called on the way out of a failed run too: its own error must not be hidden by this one.
            logger.exception("Could not record the summary of users without a usable password")


def _renew_statistics() -> None:
    """ANALYZE the users table on PostgreSQL. After a run that made most of a site's users, the planner's statistics
    may still describe a fraction of the table (at a million users they expected 57,000 rows): it then read the
    whole table for each membership page of the tag scan, and the scan took twice as long."""
    if connection.vendor != "postgresql":
        return  # SQLite's planner looks the identifiers up by index without statistics
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(User._meta.db_table)}")


def _fetch_people(client: CustomerIOClient, members: list[dict]) -> list[dict]:
    by_type: dict[str, list[str]] = {}
    for identifiers in members:
        id_type, value = lookup_identifier(identifiers)
        if value:
            by_type.setdefault(id_type, []).append(value)
    people = []
    for id_type, values in by_type.items():
        people += client.get_attributes_batch(values, id_type)
    return people
