"""The backfills hold no set or dict of every user: memberships are IdSets (a bit per user), membership pages are
matched to users as they arrive, tags are compared and written a window of users at a time, and Customer.io is read
on a thread ahead of the writing. What a user sees must not change with it: the same tags, lines and signals across
windows and blocks of ids, a person named twice handled once, and an import stopped half-way resumable."""

import threading
import time

import pytest

from cio.client import CustomerIOClient
from users.models import ActivityLog, ImportRun, SegmentChange, User, UserTag
from users.services.backfills import prefetch, tag_writes
from users.services.backfills.id_sets import BLOCK, IdSet, ids_of

from .conftest import make_users, population, run, segments_of, tags_of


def test_an_id_set_holds_ids_across_blocks_in_order():
    ids = [0, 1, 7, 8, BLOCK - 1, BLOCK, BLOCK + 9, 5 * BLOCK + 3, 5 * BLOCK + 3]
    ids_set = IdSet(ids)

    assert len(ids_set) == 8
    assert list(ids_set) == sorted(set(ids))
    assert ids_set.block_numbers() == [0, 1, 5]
    assert ids_of(1, ids_set.block(1)) == [BLOCK, BLOCK + 9]
    assert (BLOCK + 9) in ids_set and (BLOCK + 8) not in ids_set and 10 * BLOCK not in ids_set

    ids_set.discard(BLOCK)
    ids_set.discard(BLOCK)  # twice: no effect
    ids_set.discard(99 * BLOCK)  # never there
    assert len(ids_set) == 7 and BLOCK not in ids_set

    other = IdSet([1, 8, 5 * BLOCK + 3, 7 * BLOCK])
    assert list(ids_set.intersection(other)) == [1, 8, 5 * BLOCK + 3]
    ids_set.update(other)
    assert len(ids_set) == 8 and list(ids_set)[-1] == 7 * BLOCK
    ids_set.set_block(5, 0)
    assert 5 * BLOCK + 3 not in ids_set and len(ids_set) == 7


def test_read_ahead_keeps_the_order_stops_with_the_caller_and_hands_on_errors(transactional_db):
    made = []

    def produce():
        for n in range(100):
            made.append(n)
            yield n

    items = prefetch.read_ahead(produce, 2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the caller stops early: the reader stops after the item it is making
    time.sleep(prefetch._PUT_POLL_SECONDS * 3)
    assert len(made) <= 3 + 2 + 2
    assert not [t for t in threading.enumerate() if t.name == "backfill-read-ahead"]

    def fail_at_the_third():
        yield 1
        yield 2
        raise RuntimeError("Customer.io went away")

    got = []
    with pytest.raises(RuntimeError, match="went away"):
        for item in prefetch.read_ahead(fail_at_the_third, 4):
            got.append(item)
    assert got == [1, 2]


@pytest.mark.django_db
def test_in_a_transaction_on_sqlite_the_reads_stay_on_the_callers_thread():
    from django.db import connection

    threads = []

    def produce():
        threads.append(threading.current_thread())
        yield 1

    assert list(prefetch.read_ahead(produce, 2)) == [1]
    on_caller = connection.vendor == "sqlite"  # a test's transaction holds SQLite's write lock
    assert (threads == [threading.current_thread()]) == on_caller


USERS = 600


@pytest.fixture
def spread_site(emulator, tags):
    """600 people, all users, half of them linked by cio_id: their ids spread over many blocks of ids (100 apart,
    with gaps where users were deleted), so that the writer goes through many windows."""
    emulator.reset(population(USERS))
    users = make_users(range(0, USERS, 2)) + make_users(range(1, USERS, 2), linked=False)
    start = (max(user.pk for user in users) // BLOCK + 2) * BLOCK  # above every id taken (PostgreSQL's sequence)
    for n, user in enumerate(users):
        User.objects.filter(pk=user.pk).update(id=start + 100 * n)
    users = list(User.objects.order_by("pk"))
    User.objects.filter(pk__in=[user.pk for user in users[::7]]).delete()
    for user in users[1::7]:
        UserTag.objects.create(user=user, tag=tags[4])  # a tag to take off, unless they are in segment 4
    emulator.clear_requests()
    return list(User.objects.order_by("pk"))


def test_many_windows_give_the_tags_lines_and_signals_of_one(
    spread_site, emulator, tags, monkeypatch, signal_log, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(tag_writes, "WINDOW_USERS", 60)  # windows of one or two blocks
    assert spread_site[-1].pk // BLOCK - spread_site[0].pk // BLOCK > 10
    monkeypatch.setattr(tag_writes, "SIGNAL_CHUNK", 11)
    # The site took Everyone off this user (in segments 1 and 3) a moment ago: Customer.io may not show it yet.
    kept = User.objects.get(email="person597@example.com")
    SegmentChange.objects.create(user=kept, tag=tags[1], action=SegmentChange.Action.REMOVE)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = run("cio_resync_tags", "--all")

    assert outcome.code == 0, outcome.text
    assert f"{len(spread_site)} updated, 0 unchanged" in outcome.out
    for user in spread_site:
        n = int(user.email.removeprefix("person").split("@")[0])
        assert tags_of(user) == ([3] if user == kept else segments_of(n)), user.email
    lines = ActivityLog.objects.filter(source="backfill", user__isnull=False)
    assert lines.count() == len(spread_site)
    assert signal_log.users() == {user.email for user in spread_site}
    modified = [event for event in signal_log.events if event[0] == "modified"]
    assert len(modified) == len(spread_site)

    again = run("cio_resync_tags", "--all")
    assert f"0 updated, {len(spread_site)} unchanged" in again.out


@pytest.fixture
def pages_of_7_naming_one_person_twice(monkeypatch):
    """Membership pages of 7 people, each page but the first also naming the previous page's last person (as a
    segment changing while it is paged might)."""
    real = CustomerIOClient.iter_segment_member_pages

    def pages(self, segment_id, page_size=7, **kwargs):
        previous_last = None
        for page in real(self, segment_id, 7, **kwargs):
            identifiers = page["identifiers"]
            yield {**page, "identifiers": ([previous_last] if previous_last else []) + identifiers}
            previous_last = identifiers[-1] if identifiers else None

    monkeypatch.setattr(CustomerIOClient, "iter_segment_member_pages", pages)


def test_a_person_on_two_membership_pages_is_handled_once(emulator, tags, pages_of_7_naming_one_person_twice):
    emulator.reset(population(40))
    users = make_users(range(40))

    outcome = run("cio_resync_tags", "--all")

    assert outcome.code == 0, outcome.text
    assert "40 updated, 0 unchanged" in outcome.out
    assert UserTag.objects.count() == sum(len(segments_of(n)) for n in range(40))
    assert all(tags_of(user) == segments_of(n) for n, user in enumerate(users))
    assert ActivityLog.objects.filter(source="backfill", user__isnull=False).count() == 40


@pytest.mark.django_db(transaction=True)
def test_reading_ahead_an_import_stopped_by_customerio_resumes_each_member_once(emulator, tags):
    """Outside a transaction the import's reads run on a thread ahead of the writing: a failure there stops the run
    at the last step written, and --resume imports every member once."""
    emulator.reset(population(900))
    threads = set()

    def fail_from_the_4th_attributes_call(sender, path, **kwargs):
        threads.add(threading.current_thread().name)
        if path == "/v1/customers/attributes" and len(emulator.requests("/v1/customers/attributes")) == 3:
            emulator.set_faults(fail_rate=1.0, fail_status=503)

    from cio.transport import api_call_finished

    api_call_finished.connect(fail_from_the_4th_attributes_call, sender=CustomerIOClient)
    try:
        failed = run("cio_import_users", "--segment", "1")
    finally:
        api_call_finished.disconnect(fail_from_the_4th_attributes_call, sender=CustomerIOClient)

    assert failed.code == 1
    assert "The run's position is saved: continue it with --resume." in failed.error
    assert "backfill-read-ahead" in threads
    assert User.objects.count() == 300
    assert ImportRun.objects.get().members_done == 300

    emulator.set_faults()
    resumed = run("cio_import_users", "--segment", "1", "--resume")

    assert resumed.code == 0, resumed.text
    assert User.objects.count() == 900
    assert ImportRun.objects.get().status == "finished"
    assert tags_of(User.objects.get(email="person30@example.com")) == segments_of(30)
    assert not [t for t in threading.enumerate() if t.name == "backfill-read-ahead"]
