"""Applying and removing tags from the site's side (a visit, a finished lesson): the user's tags change at once,
and Customer.io's manual segments follow through the background worker (users.services.segment_changes)."""

from collections.abc import Iterable

from django.db import transaction

from ..models import SegmentChange, Tag
from ..services import segment_changes
from ..services.segment_changes import NotAManualSegment
from ..services.tags import TagChange, add_tags, take_off_tags
from ..tracking import track_if_enabled
from .checks import AmbiguousTagName, TagRef, as_list, tag_pk

__all__ = ["NotAManualSegment", "UnknownTag", "apply_tags", "remove_tags", "resolve_tags"]


class UnknownTag(ValueError):
    pass


def resolve_tags(tags: TagRef | Iterable[TagRef]) -> list[Tag]:
    """Tag rows for tags named by Tag, segment id or name; an unknown one is an error naming it."""
    wanted = as_list(tags)
    pks = []
    for tag in wanted:
        pk = tag_pk(tag)
        if pk is None and isinstance(tag, int | str) and not isinstance(tag, bool):
            pk = _tag_pk_from_database(tag)  # a tag created since this process loaded its index of names
        if pk is None:
            raise UnknownTag(f"No tag is named {tag!r} (run cio_sync_segments if the segment is new).")
        pks.append(pk)
    found = {tag.pk: tag for tag in Tag.objects.filter(pk__in=pks)}
    missing = [tag for tag, pk in zip(wanted, pks, strict=True) if pk not in found]
    if missing:
        raise UnknownTag(f"No tag is named {missing[0]!r}.")
    return [found[pk] for pk in dict.fromkeys(pks)]


def _tag_pk_from_database(tag: int | str) -> int | None:
    if isinstance(tag, int):
        return Tag.objects.filter(segment_id=tag).values_list("pk", flat=True).first()
    found = list(Tag.objects.filter(name__iexact=tag.strip()).order_by("segment_id"))
    if len(found) > 1:
        raise AmbiguousTagName(tag, found)
    return found[0].pk if found else None


def apply_tags(user, tags: TagRef | Iterable[TagRef]) -> TagChange:
    """Give the user these tags now (tags_applied / tags_modified go out on commit) and add them to their manual
    segments in Customer.io in the background. Raises NotAManualSegment for a data-driven segment, before changing
    anything."""
    return _change(user, tags, SegmentChange.Action.ADD)


def remove_tags(user, tags: TagRef | Iterable[TagRef]) -> TagChange:
    """Take these tags off the user now (tags_removed / tags_modified go out on commit) and remove them from their
    manual segments in Customer.io in the background. Raises NotAManualSegment for a data-driven segment."""
    return _change(user, tags, SegmentChange.Action.REMOVE)


def _change(user, tags, action: str) -> TagChange:
    if user is None or user.pk is None:
        raise ValueError("Tags are applied to a saved user.")
    rows = resolve_tags(tags)
    segment_changes.ensure_manual(rows)
    with transaction.atomic():
        if action == SegmentChange.Action.ADD:
            change = add_tags(user, rows)
            segment_changes.record(user, change.applied, action)
            for tag in change.applied:
                track_if_enabled(
                    "event_tag_applied", user, "tag_applied_on_site", {"tag": tag.name, "segment_id": tag.segment_id}
                )
        else:
            change = take_off_tags(user, rows)
            segment_changes.record(user, change.removed, action)
    return change
