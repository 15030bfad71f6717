"""Replacing a user's tags with their Customer.io segments."""

import logging
from dataclasses import dataclass, field
from functools import partial

from django.db import transaction

from ..models import Tag, User, UserTag
from ..signals import tags_applied, tags_modified, tags_removed

logger = logging.getLogger(__name__)


@dataclass
class TagChange:
    current: list[Tag] = field(default_factory=list)
    applied: list[Tag] = field(default_factory=list)
    removed: list[Tag] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [str(tag) for tag in self.current]


def tags_for_segments(segments: list[dict]) -> list[Tag]:
    """Tag rows for Customer.io segments, matched by segment id; unknown ones are created with the name as label
    and names that changed in Customer.io are updated."""
    wanted = {int(segment["id"]): (segment.get("name") or "") for segment in segments}
    if not wanted:
        return []
    Tag.objects.bulk_create(
        [Tag(segment_id=segment_id, name=name) for segment_id, name in wanted.items()], ignore_conflicts=True
    )
    tags = list(Tag.objects.filter(segment_id__in=wanted))
    renamed = [tag for tag in tags if wanted[tag.segment_id] and tag.name != wanted[tag.segment_id]]
    for tag in renamed:
        tag.name = wanted[tag.segment_id]
    if renamed:
        Tag.objects.bulk_update(renamed, ["name"])
    return sorted(tags, key=lambda tag: (tag.name, tag.segment_id))


def replace_tags(user: User, segments: list[dict]) -> TagChange:
    """Make the user's tags exactly their segments. Signals go out when the surrounding transaction commits."""
    tags = tags_for_segments(segments)
    wanted = {tag.pk: tag for tag in tags}
    current = {user_tag.tag_id: user_tag.tag for user_tag in UserTag.objects.filter(user=user).select_related("tag")}
    applied = [tag for pk, tag in wanted.items() if pk not in current]
    removed = [tag for pk, tag in current.items() if pk not in wanted]
    if removed:
        UserTag.objects.filter(user=user, tag__in=removed).delete()
    if applied:
        UserTag.objects.bulk_create([UserTag(user=user, tag=tag) for tag in applied], ignore_conflicts=True)
    change = TagChange(current=tags, applied=applied, removed=removed)
    if applied:
        send_on_commit(tags_applied, user=user, tags=applied)
    if removed:
        send_on_commit(tags_removed, user=user, tags=removed)
    send_on_commit(tags_modified, user=user, tags=tags)
    return change


def send_on_commit(signal, **kwargs) -> None:
    """Send a signal once the transaction commits. A failing receiver is logged; it must not fail the webhook
    after the data is already committed."""
    transaction.on_commit(partial(_send_robust, signal, kwargs))


def _send_robust(signal, kwargs):
    for receiver, outcome in signal.send_robust(sender=User, **kwargs):
        if isinstance(outcome, Exception):
            logger.error("Signal receiver %r failed: %s", receiver, outcome, exc_info=outcome)
