"""cio_resync_tags: everyone's tags from membership scans, a few calls per segment."""

import pytest
from django.contrib.auth.models import Group

from users.models import ActivityLog, Tag, User, UserTag

from .conftest import app_calls, assert_reads_as_a_dry_run, make_users, population, run, segments_of, tags_of

pytestmark = pytest.mark.django_db

USERS = 2000


@pytest.fixture
def site(emulator, tags):
    """2,000 people in 5 segments, all of them site users: half linked to Customer.io by cio_id, half only by
    email. Everyone starts with the wrong tags: Everyone is missing, and a tag whose segment is gone is there."""
    emulator.reset(population(USERS))
    users = make_users(range(0, USERS, 2)) + make_users(range(1, USERS, 2), linked=False)
    gone = Tag.objects.create(segment_id=99, name="Retired")
    UserTag.objects.bulk_create([UserTag(user=user, tag=gone) for user in users])
    UserTag.objects.bulk_create([UserTag(user=user, tag=tags[4]) for user in users[:50]])
    emulator.clear_requests()
    return users


def expected_tags(n):
    return segments_of(n)


def test_resync_all_makes_tags_exactly_the_segments_in_a_few_calls(site, emulator):
    outcome = run("cio_resync_tags", "--all")

    assert outcome.code == 0, outcome.text
    assert f"0 created, {USERS} updated, 0 unchanged" in outcome.out
    for n in (0, 1, 2, 3, 10, 35, 1999):
        assert tags_of(User.objects.get(email=f"person{n}@example.com")) == expected_tags(n)
    expected_rows = sum(len(segments_of(n)) for n in range(USERS))
    assert UserTag.objects.count() == expected_rows
    assert Tag.objects.filter(segment_id=99).exists()  # the row stays; cio_sync_segments --prune deletes it
    calls = app_calls(emulator)
    assert len(calls) <= 15
    assert [c["path"] for c in calls] == ["/v1/segments"] + [f"/v1/segments/{s}/membership" for s in range(1, 6)]
    assert emulator.requests("/api/") == []
    line = ActivityLog.objects.get(source="backfill", user__email="person1005@example.com")
    assert line.message == (
        "Tags from Customer.io for person1005@example.com: added Everyone, Fifths, Thirds; removed Retired"
    )


def test_a_second_run_changes_nothing(site, emulator, signal_log, django_capture_on_commit_callbacks):
    run("cio_resync_tags", "--all")
    rows = sorted(UserTag.objects.values_list("pk", flat=True))
    logged = ActivityLog.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        again = run("cio_resync_tags", "--all")

    assert f"0 updated, {USERS} unchanged" in again.out
    assert sorted(UserTag.objects.values_list("pk", flat=True)) == rows
    assert ActivityLog.objects.count() == logged + 1  # the run's own line
    assert ActivityLog.objects.latest("pk").message == (
        f"Resynced tags from Customer.io: changed for 0 users, unchanged for {USERS}"
    )
    assert signal_log.events == []


def test_tag_signals_only_for_users_whose_tags_changed(site, emulator, signal_log, django_capture_on_commit_callbacks):
    run("cio_resync_tags", "--all")
    emulator.load(
        {
            "customers": [
                {"email": "person2@example.com", "segments": [1, 3]},  # leaves Even, joins Thirds
                {"email": "person3@example.com", "segments": [1]},  # leaves Thirds
            ]
        }
    )

    with django_capture_on_commit_callbacks(execute=True):
        outcome = run("cio_resync_tags", "--all")

    assert f"2 updated, {USERS - 2} unchanged" in outcome.out
    assert signal_log.users() == {"person2@example.com", "person3@example.com"}
    assert sorted(signal_log.events) == [
        ("applied", "person2@example.com", [3]),
        ("modified", "person2@example.com", [1, 3]),
        ("modified", "person3@example.com", [1]),
        ("removed", "person2@example.com", [2]),
        ("removed", "person3@example.com", [3]),
    ]


def test_named_users_only(site, emulator):
    outcome = run("cio_resync_tags", "--user", "person10@example.com", "--user", "PERSON11@example.com")

    assert outcome.code == 0, outcome.text
    assert "0 created, 2 updated, 0 unchanged" in outcome.out
    assert tags_of(User.objects.get(email="person10@example.com")) == expected_tags(10)
    assert tags_of(User.objects.get(email="person11@example.com")) == expected_tags(11)
    assert tags_of(User.objects.get(email="person1001@example.com")) == [99]  # not asked for: untouched
    # Two users cost less one by one than a scan of five segments: the segment list, then a call each.
    assert [c["path"] for c in app_calls(emulator)] == [
        "/v1/segments",
        "/v1/customers/cio00010/segments",
        "/v1/customers/person11@example.com/segments",
    ]


def test_an_unknown_user_is_one_clear_line(emulator):
    outcome = run("cio_resync_tags", "--user", "nobody@example.com")
    assert outcome.code == 1
    assert outcome.err.strip() == "CommandError: No user with the email nobody@example.com."
    assert emulator.requests() == []


def test_dry_run_writes_nothing(site, emulator, signal_log, django_capture_on_commit_callbacks, activity_lines):
    rows = UserTag.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        outcome = run("cio_resync_tags", "--all", "--dry-run")
    assert outcome.code == 0
    assert f"Dry run (nothing written): 0 would be created, {USERS} would be updated" in outcome.out
    assert_reads_as_a_dry_run(outcome)
    assert UserTag.objects.count() == rows
    assert not ActivityLog.objects.exists()
    assert activity_lines() == []
    assert signal_log.events == []


def test_staff_accounts_keep_their_tags(emulator, tags):
    emulator.reset(population(3))
    [staff] = make_users([0], is_staff=True)
    staff.groups.add(Group.objects.create(name="Editors"))
    make_users([1, 2])
    outcome = run("cio_resync_tags", "--all")
    assert "0 created, 2 updated, 0 unchanged, 1 skipped" in outcome.out
    assert "1 staff or superuser account(s) left alone" in outcome.out
    assert tags_of(staff) == []


def test_the_shared_rate_limit_is_obeyed(cio_emulator, tags, settings):
    """With the limiter and the emulator both at 10 requests per second, a resync that needs more than ten
    calls spreads them out and is never refused."""
    settings.CUSTOMERIO_APP_API_RATE = 10
    segments = [{"id": n, "name": f"Segment {n}"} for n in range(1, 15)]
    cio_emulator.reset(
        {
            "segments": segments,
            "customers": [{"email": f"person{n}@example.com", "segments": [n + 1]} for n in range(14)],
        }
    )
    make_users(range(14), linked=False)

    outcome = run("cio_resync_tags", "--all")

    assert outcome.code == 0, outcome.text
    calls = cio_emulator.requests("/v1/")
    assert len(calls) == 15
    assert all(call["status"] == 200 for call in calls)
    times = [call["time"] for call in calls]
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[10:], strict=False))
