"""users.services.bulk_rows: many rows in few statements (COPY on PostgreSQL), with rows that would break a unique
constraint skipped when asked, inside a transaction or not, as often as a resync's windows call it."""

import pytest
from django.db import transaction
from django.utils import timezone

from users.models import Tag, User, UserTag
from users.services import bulk_rows
from users.services.bulk_rows import delete_rows, insert_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    tags = [Tag.objects.create(segment_id=n, name=f"Segment {n}") for n in (1, 2)]
    users = [User.objects.create_user(username=f"u{n}", email=f"u{n}@example.com") for n in range(3)]
    return users, tags


def pairs(users, tags):
    return {(user.pk, tag.pk) for user in users for tag in tags}


def stored():
    return set(UserTag.objects.values_list("user_id", "tag_id"))


@pytest.mark.parametrize(
    "staging_from", [1, bulk_rows.STAGING_FROM_ROWS], ids=["copied, through a temporary table on a conflict", "arrays"]
)
def test_rows_are_inserted_and_conflicting_ones_skipped_window_after_window(people, monkeypatch, staging_from):
    monkeypatch.setattr(bulk_rows, "STAGING_FROM_ROWS", staging_from)
    users, tags = people
    now = timezone.now()
    UserTag.objects.create(user=users[0], tag=tags[0])  # already there: a webhook wrote it meanwhile
    with transaction.atomic():
        # One window per user: the first conflicts (so it goes through a temporary table), the others are copied
        # straight in.
        for user in users:
            insert_rows(
                UserTag,
                ["user_id", "tag_id", "applied_at"],
                [(user.pk, tag.pk, now) for tag in tags],
                ignore_conflicts=True,
            )
    assert stored() == pairs(users, tags)
    insert_rows(UserTag, ["user_id", "tag_id", "applied_at"], [(users[1].pk, tags[0].pk, now)], ignore_conflicts=True)
    assert UserTag.objects.count() == 6  # outside a transaction too (a conflict: the temporary table's way)


def test_rows_without_conflicts_are_copied_and_keys_deleted(people):
    users, tags = people
    now = timezone.now()
    insert_rows(UserTag, ["user_id", "tag_id", "applied_at"], [(user.pk, tags[1].pk, now) for user in users])
    assert stored() == pairs(users, tags[1:])
    delete_rows(UserTag, ["user_id", "tag_id"], [(users[0].pk, tags[1].pk), (users[2].pk, tags[1].pk)])
    assert stored() == {(users[1].pk, tags[1].pk)}
