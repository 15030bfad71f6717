"""`cio_resync_tags`: everyone's tags from Customer.io, read from segment membership pages (up to 30,000 people a
call) rather than one segments call per user, and written in bulk."""

from collections import defaultdict
from dataclasses import dataclass

from cio import get_client
from cio.client import CustomerIOClient
from cio.errors import ContactNotFound

from ...models import User
from ..activity import log_activity
from .common import BACKFILL, BackfillResult, Progress, counting_calls, selected_users
from .id_sets import IdSet
from .membership_scan import ScannedMemberships, scan_segments
from .tag_writes import TagOutcome, write_memberships


@dataclass
class Memberships:
    """Who is in which segment among a few users, as sets (the queue's bulk tags): see apply_memberships."""

    user_ids: set[int]  # the users covered: their tags become exactly their segments
    by_segment: dict[int, set[int]]  # segment id -> the covered users in it


def resync_tags(result: BackfillResult, *, emails: list[str] | None = None, progress: Progress | None = None) -> None:
    """Make the tags of every user (or of the users with `emails`) exactly their Customer.io segments: stale tags
    removed, new ones added, the tag signals sent for the users whose tags changed, and only for them.

    Calls: one for the segment list, then one per membership page of each segment — unless fewer users are asked
    for than there are segments, when one segments call per user is cheaper."""
    progress = progress or Progress()
    client = get_client()
    client.require_credentials(app=True)
    with counting_calls(result):
        users = selected_users(emails, result)
        progress.stage("Reading segments")
        segments = client.list_segments()
        if emails is not None and users.count() < len(segments):
            memberships = read_user_segments(client, list(users), progress)
        else:
            memberships = scan_segments(segments, users, progress=progress)
    progress.stage(result.wording("Writing tags", "Tags that would be written"))
    outcome = write_memberships(segments, memberships, dry_run=result.dry_run)
    result.updated += outcome.changed
    result.unchanged += outcome.unchanged
    if not result.dry_run:
        log_activity(
            BACKFILL,
            f"Resynced tags from Customer.io: changed for {outcome.changed} users, unchanged for {outcome.unchanged}",
        )


def read_user_segments(
    client: CustomerIOClient, users: list[User], progress: Progress | None = None
) -> ScannedMemberships:
    """Each user's segments with one call per user: cheaper than a scan for a handful of users."""
    progress = progress or Progress()
    progress.stage("Reading users' segments", total=len(users), unit="users")
    by_segment: dict[int, IdSet] = defaultdict(IdSet)
    for user in users:
        identifier, id_type = (user.cio_id, "cio_id") if user.cio_id else (user.email, "email")
        try:
            segments = client.get_segments(identifier, id_type)
        except ContactNotFound:
            segments = []  # as a scan would find them: in no segment
        for segment in segments:
            by_segment[int(segment["id"])].add(user.pk)
        progress.advance()
    return ScannedMemberships(covered=IdSet(user.pk for user in users), by_segment=dict(by_segment))


def apply_memberships(
    segments: list[dict], memberships: Memberships, *, dry_run: bool = False, log_changes: bool = True
) -> TagOutcome:
    """The resync's writer (tag_writes.write_memberships) for a few users given as sets; the outcome lists each
    change. The queue's bulk tags (webhooks.queue.bulk_tags) use it."""
    scanned = ScannedMemberships(
        covered=IdSet(memberships.user_ids),
        by_segment={segment_id: IdSet(members) for segment_id, members in memberships.by_segment.items()},
    )
    return write_memberships(segments, scanned, dry_run=dry_run, log_changes=log_changes, keep_changes=True)
