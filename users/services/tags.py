"""Replacing a user's tags with their Customer.io segments."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from django.db import transaction

from settings_app import freshness

from ..models import SegmentChange, Tag, User, UserTag
from ..signals import tags_applied, tags_modified, tags_removed
from .segment_changes import pending_changes

logger = logging.getLogger(__name__)

# The freshness kind of the tag table (names and segment ids), which users.access holds per process: changed by
# every write of tags, including the bulk ones that send no model signal.
TAG_INDEX_KIND = "tags"
# Where users.access keeps a user's tags for the life of the user object (a request).
USER_TAGS_ATTRIBUTE = "_access_tags"


def forget_user_tags(user) -> None:
    """The next access check reads the user's tags again (they changed)."""
    if user is not None:
        user.__dict__.pop(USER_TAGS_ATTRIBUTE, None)
        wrapped = user.__dict__.get("_wrapped")  # request.user is a SimpleLazyObject
        if wrapped is not None and hasattr(wrapped, "__dict__"):
            wrapped.__dict__.pop(USER_TAGS_ATTRIBUTE, None)


@dataclass
class TagChange:
    current: list[Tag] = field(default_factory=list)
    applied: list[Tag] = field(default_factory=list)
    removed: list[Tag] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [str(tag) for tag in self.current]


@dataclass
class TagSync:
    tags: list[Tag]  # one per segment, sorted by name
    created: list[Tag] = field(default_factory=list)
    updated: list[Tag] = field(default_factory=list)  # renamed, or their kind changed


def sync_tags(segments: list[dict]) -> TagSync:
    """Tag rows for Customer.io segments, matched by segment id: unknown ones are created, and names and kinds that
    changed in Customer.io are updated (an empty name or a missing type leaves the stored one)."""
    wanted = {int(segment["id"]): segment for segment in segments}
    if not wanted:
        return TagSync(tags=[])
    known = set(Tag.objects.filter(segment_id__in=wanted).values_list("segment_id", flat=True))
    Tag.objects.bulk_create(
        [
            Tag(
                segment_id=segment_id,
                name=segment.get("name") or "",
                kind=Tag.kind_from_segment_type(segment.get("type")),
            )
            for segment_id, segment in wanted.items()
            if segment_id not in known
        ],
        ignore_conflicts=True,
    )
    tags = list(Tag.objects.filter(segment_id__in=wanted))
    updated = []
    renamed = set()
    for tag in tags:
        segment = wanted[tag.segment_id]
        name, kind = segment.get("name") or tag.name, Tag.kind_from_segment_type(segment.get("type")) or tag.kind
        if (name, kind) != (tag.name, tag.kind):
            if name != tag.name:
                renamed.add(tag.pk)
            tag.name, tag.kind = name, kind
            updated.append(tag)
    if updated:
        Tag.objects.bulk_update(updated, ["name", "kind"])
    created = [tag for tag in tags if tag.segment_id not in known]
    if any(tag.pk in renamed for tag in updated):
        # Every process's index of tag names must learn the new name; a new tag needs no reload (see
        # users.access.checks: a user's own tags are consulted too), which keeps a webhook that meets a new
        # segment from costing every process a configuration re-read.
        freshness.changed(TAG_INDEX_KIND)
    return TagSync(tags=sorted(tags, key=_tag_order), created=created, updated=[t for t in updated if t not in created])


def tags_for_segments(segments: list[dict]) -> list[Tag]:
    """Tag rows for Customer.io segments (see sync_tags), sorted by name."""
    return sync_tags(segments).tags


def _tag_order(tag: Tag):
    return (tag.name, tag.segment_id)


def replace_tags(user: User, segments: list[dict]) -> TagChange:
    """Make the user's tags exactly their segments. Signals go out when the surrounding transaction commits."""
    tags = tags_for_segments(segments)
    wanted = {tag.pk: tag for tag in tags}
    current = {user_tag.tag_id: user_tag.tag for user_tag in UserTag.objects.filter(user=user).select_related("tag")}
    # Customer.io may not show yet what the site changed a moment ago: the site's version holds meanwhile.
    for tag_id, action in pending_changes([user.pk]).get(user.pk, {}).items():
        if action == SegmentChange.Action.ADD and tag_id in current:
            wanted[tag_id] = current[tag_id]
        elif action == SegmentChange.Action.REMOVE:
            wanted.pop(tag_id, None)
    tags = sorted(wanted.values(), key=_tag_order)
    applied = [tag for pk, tag in wanted.items() if pk not in current]
    removed = [tag for pk, tag in current.items() if pk not in wanted]
    if removed:
        UserTag.objects.filter(user=user, tag__in=removed).delete()
    if applied:
        UserTag.objects.bulk_create([UserTag(user=user, tag=tag) for tag in applied], ignore_conflicts=True)
    change = TagChange(current=tags, applied=applied, removed=removed)
    forget_user_tags(user)
    if applied:
        send_on_commit(tags_applied, user=user, tags=applied)
    if removed:
        send_on_commit(tags_removed, user=user, tags=removed)
    send_on_commit(tags_modified, user=user, tags=tags)
    return change


def add_tags(user: User, tags: Iterable[Tag]) -> TagChange:
    """Give the user these tags (those they lack). Signals go out when the surrounding transaction commits, and
    only when something changed."""
    return _change_tags(user, add=list(tags), remove=[])


def take_off_tags(user: User, tags: Iterable[Tag]) -> TagChange:
    """Take these tags off the user (those they hold), with the signals as add_tags."""
    return _change_tags(user, add=[], remove=list(tags))


def _change_tags(user: User, add: list[Tag], remove: list[Tag]) -> TagChange:
    current = {user_tag.tag_id: user_tag.tag for user_tag in UserTag.objects.filter(user=user).select_related("tag")}
    applied = sorted({tag.pk: tag for tag in add if tag.pk not in current}.values(), key=_tag_order)
    removed = sorted({tag.pk: tag for tag in remove if tag.pk in current}.values(), key=_tag_order)
    if applied:
        UserTag.objects.bulk_create([UserTag(user=user, tag=tag) for tag in applied], ignore_conflicts=True)
    if removed:
        UserTag.objects.filter(user=user, tag__in=removed).delete()
    now = {pk: tag for pk, tag in current.items() if pk not in {tag.pk for tag in removed}}
    now.update((tag.pk, tag) for tag in applied)
    change = TagChange(current=sorted(now.values(), key=_tag_order), applied=applied, removed=removed)
    forget_user_tags(user)
    if applied:
        send_on_commit(tags_applied, user=user, tags=applied)
    if removed:
        send_on_commit(tags_removed, user=user, tags=removed)
    if applied or removed:
        send_on_commit(tags_modified, user=user, tags=change.current)
    return change


def send_tag_signals(
    changes: dict[int, tuple[list[int], list[int]]], deleted_tags: Iterable[Tag] = (), chunk_size: int = 500
) -> None:
    """The tag signals for many users at once, after their changes are committed: {user id: (applied tag ids,
    removed tag ids)}, users whose tags did not change left out. Each user gets what replace_tags would send:
    tags_applied, tags_removed, then tags_modified with all their tags. `deleted_tags`: removed tags that are no
    longer in the table (pruned), so that the signal can still name them."""
    if not any(signal.has_listeners(User) for signal in (tags_applied, tags_removed, tags_modified)):
        return  # nobody listens: spare loading every changed user
    tags_by_id = {tag.pk: tag for tag in deleted_tags}
    tags_by_id.update((tag.pk, tag) for tag in Tag.objects.all())
    user_ids = sorted(changes)
    for start in range(0, len(user_ids), chunk_size):
        chunk = user_ids[start : start + chunk_size]
        current: dict[int, list[Tag]] = {user_id: [] for user_id in chunk}
        for user_id, tag_id in UserTag.objects.filter(user_id__in=chunk).values_list("user_id", "tag_id"):
            current[user_id].append(tags_by_id[tag_id])
        for user in User.objects.filter(pk__in=chunk).select_related("role"):
            applied_ids, removed_ids = changes[user.pk]
            applied = sorted((tags_by_id[pk] for pk in applied_ids if pk in tags_by_id), key=_tag_order)
            removed = sorted((tags_by_id[pk] for pk in removed_ids if pk in tags_by_id), key=_tag_order)
            if applied:
                _send_robust(tags_applied, {"user": user, "tags": applied})
            if removed:
                _send_robust(tags_removed, {"user": user, "tags": removed})
            _send_robust(tags_modified, {"user": user, "tags": sorted(current[user.pk], key=_tag_order)})


def send_on_commit(signal, **kwargs) -> None:
    """Send a signal once the transaction commits. A failing receiver is logged; it must not fail the webhook
    after the data is already committed."""
    transaction.on_commit(partial(_send_robust, signal, kwargs))


def _send_robust(signal, kwargs):
    for receiver, outcome in signal.send_robust(sender=User, **kwargs):
        if isinstance(outcome, Exception):
            logger.error("Signal receiver %r failed: %s", receiver, outcome, exc_info=outcome)
