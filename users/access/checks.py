"""Does this user hold these tags? The one place that answers it for views, templates, rules and code.

A tag is named by a Tag, a Customer.io segment id (int) or a name (str, case-insensitive). Names are looked up in a
per-process index of every tag (refreshed within a second of a change, see settings_app.freshness), so a check
costs no query once the user's own tags are loaded, which happens once per user object (once per request for
`request.user`).
"""

import builtins
from collections.abc import Iterable

from settings_app import freshness

from ..models import Tag, UserTag
from ..services.tags import TAG_INDEX_KIND, USER_TAGS_ATTRIBUTE

TagRef = Tag | int | str


class AmbiguousTagName(ValueError):
    """A name given for a tag belongs to more than one tag: name the tag by its segment id instead."""

    def __init__(self, name: str, tags: list[Tag]):
        self.name, self.tags = name, tags
        listed = " and ".join(f'"{tag.name}" (segment {tag.segment_id})' for tag in tags)
        super().__init__(f'The tag name "{name}" is shared by {listed}: name it by its segment id.')


class _TagIndex:
    def __init__(self, tags: list[tuple[int, int, str]]):
        self.by_segment: dict[int, int] = {}
        self.by_name: dict[str, list[Tag]] = {}
        for pk, segment_id, name in tags:
            self.by_segment[segment_id] = pk
            if name:
                tag = Tag(pk=pk, segment_id=segment_id, name=name)
                self.by_name.setdefault(name.casefold(), []).append(tag)


_index = freshness.Memo(TAG_INDEX_KIND, lambda: _TagIndex(list(Tag.objects.values_list("pk", "segment_id", "name"))))


def is_authenticated(user) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False))


def user_tags(user) -> dict[int, Tag]:
    """The user's tags by primary key, read from the database once per user object."""
    cached = getattr(user, USER_TAGS_ATTRIBUTE, None)
    if cached is None:
        cached = {}
        if is_authenticated(user) and user.pk is not None:
            cached = {ut.tag.pk: ut.tag for ut in UserTag.objects.filter(user_id=user.pk).select_related("tag")}
        # Set on the wrapped object: request.user is a SimpleLazyObject, and setattr goes through to the user.
        setattr(user, USER_TAGS_ATTRIBUTE, cached)
    return cached


def tag_pk(tag: TagRef, held: dict[int, Tag] | None = None) -> int | None:
    """The primary key of the tag named by `tag`, or None when no such tag exists.

    Raises AmbiguousTagName for a name two tags share, TypeError for anything that names no tag."""
    if isinstance(tag, Tag):
        return tag.pk
    if isinstance(tag, bool) or not isinstance(tag, int | str):
        raise TypeError(f"A tag is a Tag, a segment id or a name, not {type(tag).__name__}.")
    index = _index.get()
    if isinstance(tag, int):
        pk = index.by_segment.get(tag)
        if pk is None and held:
            pk = next((t.pk for t in held.values() if t.segment_id == tag), None)
        return pk
    key = tag.strip().casefold()
    found = {t.pk: t for t in index.by_name.get(key, [])}
    if held:
        # Tags created after the index was loaded (creating a tag does not reload every process's index; renaming
        # one does): the user's own rows know the ones that matter for this user.
        found.update((t.pk, t) for t in held.values() if t.name.casefold() == key)
    if len(found) > 1:
        raise AmbiguousTagName(tag, sorted(found.values(), key=lambda t: t.segment_id))
    return next(iter(found), None)


def tag_pks(tags: TagRef | Iterable[TagRef], held: dict[int, Tag] | None = None) -> list[int | None]:
    return [tag_pk(tag, held) for tag in as_list(tags)]


def as_list(tags) -> list:
    """One tag or several: a single Tag, id or name is a list of one."""
    if tags is None:
        return []
    if isinstance(tags, Tag | int | str):
        return [tags]
    return list(tags)


def has_tags(user, any: Iterable[TagRef] = (), all: Iterable[TagRef] = (), none: Iterable[TagRef] = ()) -> bool:
    """True when the user holds at least one of `any` (if given), every one of `all`, and none of `none`.

    An anonymous user (or None) holds no tags and passes no check, not even a `none`-only one: gated content
    needs a logged-in user, as in WP Fusion. A name or id that no tag has is a tag nobody holds."""
    if not is_authenticated(user):
        return False
    held = user_tags(user)
    any_pks, all_pks, none_pks = tag_pks(any, held), tag_pks(all, held), tag_pks(none, held)
    if any_pks and not builtins.any(pk in held for pk in any_pks):
        return False
    if not builtins.all(pk in held for pk in all_pks):
        return False
    return not builtins.any(pk in held for pk in none_pks)


def has_tag(user, tag: TagRef) -> bool:
    """Whether the user holds this one tag."""
    return has_tags(user, all=[tag])


def has_deliverable_email(user) -> bool:
    """True when the user is logged in and their email is not marked undeliverable: Customer.io has not reported
    that mail to it bounces (or was marked as spam, ...) through a message-event reaction, and no admin ticked
    **email undeliverable** on their page.

    For content reached through an email — a course unlocked by a link you mail, a download sent on request — so
    the site can offer another way to a person who never receives the email. An anonymous user (or None) has none."""
    return is_authenticated(user) and not getattr(user, "email_undeliverable", False)
