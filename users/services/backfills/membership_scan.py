"""Who is in which Customer.io segment, among a site's users, read from segment membership pages (up to 30,000
people a call) and held as IdSets: a few megabytes for a million users, where sets and a dict of every user's
identifiers took most of a gigabyte.

Each page is matched to users as it arrives — by cio_id, then by email, as the webhooks find a person — with a few
indexed queries for its identifiers, so nothing holds every user's identifiers; the next page is read meanwhile
(prefetch.read_ahead).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from django.db import connection
from django.db.models import QuerySet

from cio import get_client
from cio.errors import ContactNotFound

from ...emails import normalize_email
from ...models import User
from .common import IN_LIST_LIMIT, Progress, UnknownSegment, batched
from .id_sets import IdSet
from .prefetch import read_ahead

# Membership pages read ahead of the matching: each is up to 30,000 people (about 10 MB as Customer.io's dicts, 4 MB
# as a MemberPage), and the matching of a page takes longer than reading the next one, so a second page ahead would
# only wait in memory.
PAGES_AHEAD = 1


@dataclass
class ScannedMemberships:
    """Who is in which segment, among the users a resync covers."""

    covered: IdSet  # the users covered: their tags become exactly their segments
    by_segment: dict[int, IdSet]  # segment id -> the covered users in it

    def only(self, user_ids: IdSet) -> "ScannedMemberships":
        """The same memberships, covering only `user_ids` among the users covered."""
        covered = self.covered.intersection(user_ids)
        return ScannedMemberships(
            covered, {segment: members.intersection(covered) for segment, members in self.by_segment.items()}
        )


def scan_segments(
    segments: list[dict],
    users: QuerySet,
    *,
    scope_segment: int | None = None,
    progress: Progress | None = None,
) -> ScannedMemberships:
    """Page through every segment's membership and note which of `users` are in it. Every one of `users` is
    covered — or, with `scope_segment`, only the ones in that segment: it is scanned first to learn who they are."""
    progress = progress or Progress()
    progress.stage("Scanning segment memberships", total=len(segments), unit="segments")
    ordered = [int(segment["id"]) for segment in sorted(segments, key=lambda s: int(s["id"]) != scope_segment)]
    eligible = IdSet()
    eligible.add_all(users.values_list("pk", flat=True).iterator(chunk_size=10_000))
    covered = eligible if scope_segment is None else None
    by_segment = {segment_id: IdSet() for segment_id in ordered}
    for segment_id, page in read_ahead(lambda: _pages(ordered), PAGES_AHEAD):
        if page is None:  # the segment is done
            if segment_id == scope_segment:
                covered = by_segment[segment_id]
            progress.advance()
            continue
        if isinstance(page, ContactNotFound):
            if segment_id == scope_segment:
                raise UnknownSegment(segment_id) from None
            continue  # deleted since the list was read: nobody is in it any more
        found = find_users(page, eligible)
        by_segment[segment_id].add_all(found if covered is None else (i for i in found if i in covered))
    return ScannedMemberships(covered=covered if covered is not None else IdSet(), by_segment=by_segment)


class MemberPage(NamedTuple):
    """A membership page's people as two lists of strings ("" where a person has none): as Customer.io's dicts, a
    page of 30,000 takes more than twice the memory, and a page waits while the one before it is matched."""

    cio_ids: list[str]
    emails: list[str]

    @classmethod
    def of(cls, identifiers: list[dict]) -> "MemberPage":
        return cls(
            [identifier.get("cio_id") or "" for identifier in identifiers],
            [identifier.get("email") or "" for identifier in identifiers],
        )


def _pages(segment_ids: list[int]) -> Iterator[tuple[int, object]]:
    """On the reading thread: (segment id, MemberPage) for every page of every segment, then (segment id, None)
    once a segment is read, or (segment id, ContactNotFound) when Customer.io no longer has it."""
    client = get_client()
    for segment_id in segment_ids:
        try:
            for page in client.iter_segment_member_pages(segment_id):
                yield segment_id, MemberPage.of(page["identifiers"])
        except ContactNotFound as exc:
            yield segment_id, exc
        yield segment_id, None


def find_users(page: MemberPage, eligible: IdSet) -> list[int]:
    """The ids of the `eligible` users a membership page names: by cio_id, else by email (as
    find_user_for_person does), in a few queries. A person named twice is listed twice."""
    by_cio_id = _user_ids("cio_id", [cio_id for cio_id in page.cio_ids if cio_id])
    found, emails = [], []
    for cio_id, email in zip(page.cio_ids, page.emails, strict=True):
        user_id = by_cio_id.get(cio_id)
        if user_id is not None and user_id in eligible:
            found.append(user_id)
        elif email and (email := normalize_email(email)):
            emails.append(email)
    by_email = _user_ids("email_normalized", emails)
    found += [user_id for email in emails if (user_id := by_email.get(email)) is not None and user_id in eligible]
    return found


def _user_ids(column: str, values: list[str]) -> dict[str, int]:
    """{value: user id} for the users whose `column` (cio_id or email_normalized: unique) holds one of `values`.
    In SQL of its own: the ORM prepares each value of an IN list (about 4 µs each: a minute for a million users'
    memberships), and these are plain strings."""
    if not values:
        return {}
    table, pk = connection.ops.quote_name(User._meta.db_table), connection.ops.quote_name(User._meta.pk.column)
    column = connection.ops.quote_name(column)
    found = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One text parameter the server splits: a list parameter goes through psycopg's array dumper, in Python
            # (a page of 30,000 cio_ids: 34 ms to send that way, 7 ms this way). No stored email or cio_id holds a
            # line break, so a value with one matches nobody: it is left out rather than split (and so is an empty
            # value, which the split could not tell from nothing).
            lines = "\n".join(value for value in values if value and "\n" not in value)
            cursor.execute(
                f"SELECT {column}, {pk} FROM {table} WHERE {column} = ANY(string_to_array(%s, E'\\n'))",  # noqa: S608
                [lines],
            )
            return dict(cursor.fetchall())
        for chunk in batched(values, IN_LIST_LIMIT):
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT {column}, {pk} FROM {table} WHERE {column} IN ({placeholders})", chunk)  # noqa: S608
            found.update(cursor.fetchall())
    return found
