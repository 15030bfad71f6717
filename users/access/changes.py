"""Applying and removing tags from the site's side (a visit, a finished lesson): the user's tags change at once."""

from collections.abc import Iterable

from django.db import transaction

from ..models import Tag
from ..services.tags import TagChange, add_tags, take_off_tags
from .checks import TagRef, as_list, tag_pk


class UnknownTag(ValueError):
    pass


def resolve_tags(tags: TagRef | Iterable[TagRef]) -> list[Tag]:
    """Tag rows for tags named by Tag, segment id or name; an unknown one is an error naming it."""
    wanted = as_list(tags)
    pks = []
    for tag in wanted:
        pk = tag_pk(tag)
        if pk is None:
            raise UnknownTag(f"No tag is named {tag!r}.")
        pks.append(pk)
    found = {tag.pk: tag for tag in Tag.objects.filter(pk__in=pks)}
    missing = [tag for tag, pk in zip(wanted, pks, strict=True) if pk not in found]
    if missing:
        raise UnknownTag(f"No tag is named {missing[0]!r}.")
    return [found[pk] for pk in dict.fromkeys(pks)]


def apply_tags(user, tags: TagRef | Iterable[TagRef]) -> TagChange:
    """Give the user these tags now (tags_applied / tags_modified go out on commit)."""
    rows = resolve_tags(tags)
    with transaction.atomic():
        change = add_tags(user, rows)
    return change


def remove_tags(user, tags: TagRef | Iterable[TagRef]) -> TagChange:
    """Take these tags off the user now (tags_removed / tags_modified go out on commit)."""
    rows = resolve_tags(tags)
    with transaction.atomic():
        change = take_off_tags(user, rows)
    return change
