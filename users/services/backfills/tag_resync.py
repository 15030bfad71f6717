"""`cio_resync_tags`: everyone's tags from Customer.io, read from segment membership pages (up to 30,000 people a
call) rather than one segments call per user, and written in bulk."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction

from cio import get_client
from cio.client import CustomerIOClient
from cio.errors import ContactNotFound

from ...models import SegmentChange, Tag, User, UserTag
from ..activity import Activity, log_activities, log_activity
from ..segment_changes import pending_changes
from ..tags import send_tag_signals, sync_tags
from .common import (
    BACKFILL,
    BackfillResult,
    Progress,
    UnknownSegment,
    UserIndex,
    batched,
    counting_calls,
    selected_users,
)

WRITE_BATCH = 1000
# Up to this many users, a tag's current holders are read with user_id IN (...); past it, all of them are read
# and filtered in memory (a long IN list is slow, and SQLite caps the parameters of one statement).
IN_QUERY_LIMIT = 1000


@dataclass
class Memberships:
    """Who is in which segment, among the users a resync covers."""

    user_ids: set[int]  # the users covered: their tags become exactly their segments
    by_segment: dict[int, set[int]]  # segment id -> the covered users in it

    def only(self, user_ids: set[int]) -> "Memberships":
        """The same memberships, covering only `user_ids` among the users covered."""
        covered = self.user_ids & user_ids
        return Memberships(covered, {segment: members & covered for segment, members in self.by_segment.items()})


@dataclass
class TagOutcome:
    changed: int  # users whose tags changed
    unchanged: int
    # {user id: (applied tag ids, removed tag ids)} of the users whose tags changed.
    changes: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)


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
            memberships = scan_memberships(client, segments, UserIndex.of(users), progress=progress)
    progress.stage(result.wording("Writing tags", "Tags that would be written"))
    outcome = apply_memberships(segments, memberships, dry_run=result.dry_run)
    result.updated += outcome.changed
    result.unchanged += outcome.unchanged
    if not result.dry_run:
        log_activity(
            BACKFILL,
            f"Resynced tags from Customer.io: changed for {outcome.changed} users, unchanged for {outcome.unchanged}",
        )


def scan_memberships(
    client: CustomerIOClient,
    segments: list[dict],
    index: UserIndex,
    *,
    scope_segment: int | None = None,
    progress: Progress | None = None,
) -> Memberships:
    """Page through every segment's membership and note which local users (those `index` knows) are in it. With
    `scope_segment`, only that segment's members are covered: it is scanned first to learn who they are."""
    progress = progress or Progress()
    progress.stage("Scanning segment memberships", total=len(segments), unit="segments")
    ordered = sorted(segments, key=lambda segment: int(segment["id"]) != scope_segment)
    covered = None if scope_segment is None else set()
    by_segment: dict[int, set[int]] = {}
    for segment in ordered:
        segment_id = int(segment["id"])
        members = set()
        try:
            for page in client.iter_segment_member_pages(segment_id):
                for identifiers in page["identifiers"]:
                    user_id = index.find(identifiers)
                    if user_id is not None and (covered is None or segment_id == scope_segment or user_id in covered):
                        members.add(user_id)
        except ContactNotFound:
            if segment_id == scope_segment:
                raise UnknownSegment(segment_id) from None
            # Deleted since the list was read: nobody is in it any more.
        by_segment[segment_id] = members
        if segment_id == scope_segment:
            covered = members
        progress.advance()
    return Memberships(user_ids=index.user_ids if covered is None else covered, by_segment=by_segment)


def read_user_segments(client: CustomerIOClient, users: list[User], progress: Progress | None = None) -> Memberships:
    """Each user's segments with one call per user: cheaper than a scan for a handful of users."""
    progress = progress or Progress()
    progress.stage("Reading users' segments", total=len(users), unit="users")
    by_segment: dict[int, set[int]] = defaultdict(set)
    for user in users:
        identifier, id_type = (user.cio_id, "cio_id") if user.cio_id else (user.email, "email")
        try:
            segments = client.get_segments(identifier, id_type)
        except ContactNotFound:
            segments = []  # as a scan would find them: in no segment
        for segment in segments:
            by_segment[int(segment["id"])].add(user.pk)
        progress.advance()
    return Memberships(user_ids={user.pk for user in users}, by_segment=dict(by_segment))


def apply_memberships(
    segments: list[dict], memberships: Memberships, *, dry_run: bool = False, log_changes: bool = True
) -> TagOutcome:
    """Write the differences in one transaction: UserTag rows deleted and inserted in bulk, an activity line per
    changed user (unless `log_changes` is off: the caller writes its own), and the tag signals for them once
    committed. Tags of segments gone from Customer.io are removed from the covered users (the Tag rows stay:
    cio_sync_segments --prune deletes them). The queue's bulk tags (webhooks.queue.bulk_tags) use it too."""
    with transaction.atomic():
        listed = sync_tags(segments).tags
        gone = list(Tag.objects.exclude(segment_id__in=[tag.segment_id for tag in listed]))
        changes: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        # Tags the site applied or removed that Customer.io may not show yet: the site's version holds meanwhile.
        site_changes: dict[int, dict[int, str]] = defaultdict(dict)  # tag id -> {user id: action}
        for user_id, by_tag in pending_changes().items():
            if user_id in memberships.user_ids:
                for tag_id, action in by_tag.items():
                    site_changes[tag_id][user_id] = action
        for tag in listed + gone:
            wanted = set(memberships.by_segment.get(tag.segment_id, set()))
            current = _holders(tag, memberships.user_ids)
            for user_id, action in site_changes.get(tag.pk, {}).items():
                if action == SegmentChange.Action.ADD and user_id in current:
                    wanted.add(user_id)
                elif action == SegmentChange.Action.REMOVE:
                    wanted.discard(user_id)
            removed, added = current - wanted, wanted - current
            for chunk in batched(sorted(removed), WRITE_BATCH):
                UserTag.objects.filter(tag=tag, user_id__in=chunk).delete()
            UserTag.objects.bulk_create(
                [UserTag(user_id=user_id, tag=tag) for user_id in added], batch_size=WRITE_BATCH, ignore_conflicts=True
            )
            for user_id in added:
                changes[user_id][0].append(tag.pk)
            for user_id in removed:
                changes[user_id][1].append(tag.pk)
        if dry_run:
            transaction.set_rollback(True)
        else:
            if log_changes:
                _log_changes(changes, {tag.pk: tag for tag in listed + gone})
            changed = dict(changes)
            transaction.on_commit(lambda: send_tag_signals(changed))
    return TagOutcome(changed=len(changes), unchanged=len(memberships.user_ids) - len(changes), changes=dict(changes))


def _holders(tag: Tag, user_ids: set[int]) -> set[int]:
    """The covered users who have `tag` now."""
    holders = UserTag.objects.filter(tag=tag)
    if len(user_ids) <= IN_QUERY_LIMIT:
        return set(holders.filter(user_id__in=user_ids).values_list("user_id", flat=True))
    return {user_id for user_id in holders.values_list("user_id", flat=True).iterator(5000) if user_id in user_ids}


def _log_changes(changes: dict[int, tuple[list[int], list[int]]], tags: dict[int, Tag]) -> None:
    for chunk in batched(sorted(changes), WRITE_BATCH):
        activities = []
        for user_id, email in User.objects.filter(pk__in=chunk).values_list("pk", "email"):
            applied = sorted(str(tags[pk]) for pk in changes[user_id][0])
            removed = sorted(str(tags[pk]) for pk in changes[user_id][1])
            parts = ([f"added {', '.join(applied)}"] if applied else []) + (
                [f"removed {', '.join(removed)}"] if removed else []
            )
            activities.append(
                Activity(
                    f"Tags from Customer.io for {email}: {'; '.join(parts)}",
                    user_id=user_id,
                    context={"applied": applied, "removed": removed},
                )
            )
        log_activities(BACKFILL, activities)
