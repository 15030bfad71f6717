"""Users' tags made exactly their segments, a few thousand users at a time in user id order, so that memory stays
the same whether a resync covers a thousand users or a million: a window's tags are read, compared with its
memberships a block of ids at a time (whole-block bit operations, so unchanged users cost nothing each), and the
differences written — UserTag rows, an activity line per changed user — before the next window is read. The whole
write is one transaction, as before; the tag signals go out once it commits.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from ...models import SegmentChange, Tag, User, UserTag
from ...signals import tags_applied, tags_modified, tags_removed
from ..activity import Activity, log_activities
from ..bulk_rows import delete_rows, insert_rows
from ..segment_changes import pending_changes
from ..tags import send_tag_signals, sync_tags
from .common import BACKFILL, IN_LIST_LIMIT, batched
from .id_sets import BLOCK, IdSet, bits_of, ids_of
from .membership_scan import ScannedMemberships

# Covered users per window: its tags are read with one query (a few with IN lists), its changes written at once.
WINDOW_USERS = 4096
# Tag signals for this many users at a time, after the commit.
SIGNAL_CHUNK = 500


@dataclass
class TagOutcome:
    changed: int  # users whose tags changed
    unchanged: int
    # {user id: (applied tag ids, removed tag ids)} of the users whose tags changed, when asked for (small runs).
    changes: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)


def write_memberships(
    segments: list[dict],
    memberships: ScannedMemberships,
    *,
    dry_run: bool = False,
    log_changes: bool = True,
    keep_changes: bool = False,
) -> TagOutcome:
    """Write the differences in one transaction: UserTag rows deleted and inserted, an activity line per changed
    user (unless `log_changes` is off: the caller writes its own), and the tag signals for them once committed.
    Tags of segments gone from Customer.io are removed from the covered users (the Tag rows stay:
    cio_sync_segments --prune deletes them). Tags the site applied or removed that Customer.io may not show yet
    keep the site's version. `keep_changes`: the outcome lists every change (for callers with a few users)."""
    writer = _Writer(memberships, dry_run=dry_run, log_changes=log_changes, keep_changes=keep_changes)
    with transaction.atomic():
        listed = sync_tags(segments).tags
        gone = list(Tag.objects.exclude(segment_id__in=[tag.segment_id for tag in listed]))
        writer.write(listed + gone)
        if dry_run:
            transaction.set_rollback(True)
        else:
            transaction.on_commit(writer.send_signals)
    return TagOutcome(
        changed=writer.changed, unchanged=len(memberships.covered) - writer.changed, changes=writer.changes
    )


class _Writer:
    def __init__(self, memberships: ScannedMemberships, *, dry_run: bool, log_changes: bool, keep_changes: bool):
        self.memberships = memberships
        self.covered = memberships.covered
        self.dry_run = dry_run
        self.log_changes = log_changes and not dry_run
        self.changes: dict[int, tuple[list[int], list[int]]] = {}
        self.keep_changes = keep_changes
        self.changed = 0
        # For the signals after the commit, when something listens: who got and lost each tag (a bit per user, not
        # a list per user).
        self.signalled = any(signal.has_listeners(User) for signal in (tags_applied, tags_removed, tags_modified))
        self.applied: dict[int, IdSet] = defaultdict(IdSet)
        self.removed: dict[int, IdSet] = defaultdict(IdSet)

    def write(self, tags: list[Tag]) -> None:
        self.tags = {tag.pk: tag for tag in tags}
        self.names = {tag.pk: str(tag) for tag in tags}
        wanted = {tag.pk: self.memberships.by_segment.get(tag.segment_id) or IdSet() for tag in tags}
        site = self._site_changes()
        now = UserTag._meta.get_field("applied_at").get_db_prep_save(timezone.now(), connection)
        for window in _windows(self.covered):
            current = self._current_tags(window)
            added: list[tuple[int, int]] = []
            removed: list[tuple[int, int]] = []
            for number in window:
                covered = self.covered.block(number)
                for tag_id in self.tags:
                    holding = current.get((number, tag_id), 0)
                    wants = wanted[tag_id].block(number) & covered
                    for bit, action in site.get((number, tag_id), ()):
                        if action == SegmentChange.Action.ADD and holding & bit:
                            wants |= bit
                        elif action == SegmentChange.Action.REMOVE:
                            wants &= ~bit
                    added += [(user_id, tag_id) for user_id in ids_of(number, wants & ~holding)]
                    removed += [(user_id, tag_id) for user_id in ids_of(number, holding & ~wants)]
            if added or removed:
                self._write_window(window, added, removed, now)

    def _site_changes(self) -> dict[tuple[int, int], list[tuple[int, str]]]:
        """The covered users' tags changed on the site and maybe not shown by Customer.io yet: {(block, tag id):
        [(the user's bit in the block, "add" | "remove")]}. As many as the outbox holds, not one per user."""
        site: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
        for user_id, by_tag in pending_changes().items():
            if user_id in self.covered:
                number, offset = divmod(user_id, BLOCK)
                for tag_id, action in by_tag.items():
                    site[(number, tag_id)].append((1 << offset, action))
        return site

    def _current_tags(self, window: list[int]) -> dict[tuple[int, int], int]:
        """The covered users' tags in these blocks: {(block, tag id): bits of the users who hold it}."""
        holders: dict[tuple[int, int], list[int]] = defaultdict(list)
        for user_id, tag_id in self._rows_of_window(UserTag, ["user_id", "tag_id"], "user_id", window):
            if user_id in self.covered:
                holders[(user_id // BLOCK, tag_id)].append(user_id)
        return {key: bits_of(key[0], user_ids) for key, user_ids in holders.items()}

    def _rows_of_window(self, model, columns: list[str], user_column: str, window: list[int]) -> list[tuple]:
        """`columns` of `model`'s rows whose `user_column` is a user of these blocks: a range read where the
        covered users are dense (a resync of everyone), IN lists where they are few. In SQL of its own: the ORM
        builds a tuple per row through its iterator, a few seconds per million rows."""
        table = connection.ops.quote_name(model._meta.db_table)
        names = ", ".join(connection.ops.quote_name(column) for column in columns)
        user_column = connection.ops.quote_name(user_column)
        user_ids = [user_id for number in window for user_id in ids_of(number, self.covered.block(number))]
        rows = []
        with connection.cursor() as cursor:
            if len(user_ids) * 4 >= (window[-1] - window[0] + 1) * BLOCK:
                cursor.execute(
                    f"SELECT {names} FROM {table} WHERE {user_column} >= %s AND {user_column} < %s",  # noqa: S608
                    [window[0] * BLOCK, (window[-1] + 1) * BLOCK],
                )
                return cursor.fetchall()
            for chunk in batched(user_ids, IN_LIST_LIMIT):
                placeholders = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"SELECT {names} FROM {table} WHERE {user_column} IN ({placeholders})", chunk)  # noqa: S608
                rows += cursor.fetchall()
        return rows

    def _write_window(self, window: list[int], added: list[tuple[int, int]], removed: list[tuple[int, int]], now):
        delete_rows(UserTag, ["user_id", "tag_id"], removed)
        insert_rows(
            UserTag, ["user_id", "tag_id", "applied_at"], [(*pair, now) for pair in added], ignore_conflicts=True
        )
        changes: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for user_id, tag_id in added:
            changes[user_id][0].append(tag_id)
        for user_id, tag_id in removed:
            changes[user_id][1].append(tag_id)
        if self.signalled:
            for pairs, by_tag in ((added, self.applied), (removed, self.removed)):
                users_by_tag: dict[int, list[int]] = defaultdict(list)
                for user_id, tag_id in pairs:
                    users_by_tag[tag_id].append(user_id)
                for tag_id, user_ids in users_by_tag.items():
                    by_tag[tag_id].add_all(user_ids)
        self.changed += len(changes)
        if self.keep_changes:
            self.changes.update(changes)
        if self.log_changes:
            self._log(window, changes)

    def _log(self, window: list[int], changes: dict[int, tuple[list[int], list[int]]]) -> None:
        emails = dict(self._rows_of_window(User, [User._meta.pk.column, "email"], User._meta.pk.column, window))
        # Many users share a change (added Everyone, say): its words and context are made once per window, and the
        # same context object lets log_activities redact it once.
        said: dict[tuple, tuple[str, dict]] = {}
        activities = []
        for user_id in sorted(changes):
            if user_id not in emails:
                continue  # deleted meanwhile
            applied_ids, removed_ids = changes[user_id]
            key = (tuple(applied_ids), tuple(removed_ids))
            if key not in said:
                applied = sorted(self.names[pk] for pk in applied_ids)
                removed = sorted(self.names[pk] for pk in removed_ids)
                parts = ([f"added {', '.join(applied)}"] if applied else []) + (
                    [f"removed {', '.join(removed)}"] if removed else []
                )
                said[key] = ("; ".join(parts), {"applied": applied, "removed": removed})
            words, context = said[key]
            activities.append(
                Activity(f"Tags from Customer.io for {emails[user_id]}: {words}", user_id=user_id, context=context)
            )
        log_activities(BACKFILL, activities)

    def send_signals(self) -> None:
        """After the commit: each changed user's signals (users.services.tags.send_tag_signals), a chunk of users
        at a time."""
        if not self.signalled:
            return  # nobody listens: spare reading every changed user
        changed = IdSet()
        for users in (*self.applied.values(), *self.removed.values()):
            changed.update(users)
        for chunk in _chunks(changed, SIGNAL_CHUNK):
            changes = {user_id: ([], []) for user_id in chunk}
            first, last = chunk[0], chunk[-1]
            for tag_id, users in self.applied.items():
                for user_id in _between(users, first, last):
                    changes[user_id][0].append(tag_id)
            for tag_id, users in self.removed.items():
                for user_id in _between(users, first, last):
                    changes[user_id][1].append(tag_id)
            send_tag_signals(changes)


def _windows(covered: IdSet) -> Iterator[list[int]]:
    """Runs of consecutive block numbers holding up to WINDOW_USERS covered users (at least one block each)."""
    window, count = [], 0
    for number in covered.block_numbers():
        users = covered.block(number).bit_count()
        if window and count + users > WINDOW_USERS:
            yield window
            window, count = [], 0
        window.append(number)
        count += users
    if window:
        yield window


def _chunks(ids: IdSet, size: int) -> Iterator[list[int]]:
    chunk = []
    for id_ in ids:
        chunk.append(id_)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _between(ids: IdSet, first: int, last: int) -> list[int]:
    """The ids of `ids` from `first` to `last`, both included."""
    found = []
    for number in range(first // BLOCK, last // BLOCK + 1):
        found += [id_ for id_ in ids_of(number, ids.block(number)) if first <= id_ <= last]
    return found
