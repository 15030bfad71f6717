"""cio_import_users resumably: a run stopped by --limit (within or across membership pages), by Ctrl-C or by
Customer.io going down saves its position, --resume continues it, and each member is looked up and imported once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cio.client import CustomerIOClient
from cio.transport import api_call_finished
from users.models import ImportRun, User, UserTag

from .conftest import MEMBERS, make_users, population, run, segments_of, tags_of

pytestmark = pytest.mark.django_db


def attribute_lookups(emulator) -> list[str]:
    """Every identifier whose attributes were asked for, in order."""
    return [i for call in emulator.requests("/v1/customers/attributes") for i in call["body"]["ids"]]


def test_limit_then_resume_imports_each_member_once(emulator, segment):
    first = run("cio_import_users", "--segment", "1", "--limit", "850")
    assert first.code == 0, first.text
    assert "850 created" in first.out and "Stopped at --limit: continue with --resume." in first.out
    assert User.objects.count() == 850
    assert ImportRun.objects.get().status == "paused"

    second = run("cio_import_users", "--segment", "1", "--resume")

    assert second.code == 0, second.text
    assert f"{MEMBERS - 850} created" in second.out
    assert f"{MEMBERS} members so far — {MEMBERS} created" in second.out
    assert User.objects.count() == MEMBERS
    lookups = attribute_lookups(emulator)
    assert len(lookups) == len(set(lookups)) == MEMBERS
    run_row = ImportRun.objects.get()
    assert (run_row.status, run_row.created, run_row.members_done) == ("finished", MEMBERS, MEMBERS)
    assert tags_of(User.objects.get(email="person10@example.com")) == segments_of(10)

    nothing_left = run("cio_import_users", "--segment", "1", "--resume")
    assert nothing_left.code == 1
    assert "No unfinished import of segment 1 to resume" in nothing_left.error


def membership_reads(emulator, segment_id=1) -> list[dict]:
    return emulator.requests(f"/v1/segments/{segment_id}/membership")


def test_limit_on_a_small_segment_pauses_and_leaves_the_others_tags_alone(emulator, tags):
    """A segment of fewer than 100 members (one step, one page): --limit pauses the run, and the members it did not
    get to keep their tags until --resume imports them."""
    emulator.reset(population(40))
    [waiting] = make_users([30])  # a member the limited run does not reach, with a stale tag
    UserTag.objects.create(user=waiting, tag=tags[5])

    first = run("cio_import_users", "--segment", "1", "--limit", "15")

    assert first.code == 0, first.text
    assert "15 created, 0 updated" in first.out
    assert "Stopped at --limit: continue with --resume." in first.out
    assert ImportRun.objects.get().status == "paused"
    assert User.objects.count() == 16
    assert tags_of(waiting) == [5]
    assert tags_of(User.objects.get(email="person10@example.com")) == segments_of(10)

    second = run("cio_import_users", "--segment", "1", "--resume")

    assert second.code == 0, second.text
    assert "24 created, 1 updated" in second.out
    run_row = ImportRun.objects.get()
    assert (run_row.status, run_row.members_done, run_row.created) == ("finished", 40, 39)
    assert User.objects.count() == 40
    assert tags_of(waiting) == segments_of(30)
    lookups = attribute_lookups(emulator)
    assert len(lookups) == len(set(lookups)) == 40


@pytest.fixture
def pages_of_150(monkeypatch):
    """Membership pages of 150 people instead of 30,000, so that a test segment spans several pages."""
    monkeypatch.setattr("cio.app_api.MEMBERSHIP_PAGE_LIMIT", 150)


def test_limit_across_membership_pages_resumes_at_each_boundary(emulator, pages_of_150):
    """400 members on pages of 150, 150 and 100: a limit ending at a page's end, one ending inside a page, and one
    ending at the segment's last member."""
    emulator.reset(population(400))

    at_page_end = run("cio_import_users", "--segment", "1", "--limit", "150")
    assert at_page_end.code == 0, at_page_end.text
    assert ImportRun.objects.get().status == "paused"
    assert User.objects.count() == 150
    # The import read its first page only (the next one is --resume's); the tag scan read all three.
    assert len(membership_reads(emulator)) == 1 + 3

    emulator.clear_requests()
    inside_a_page = run("cio_import_users", "--segment", "1", "--resume", "--limit", "130")
    assert inside_a_page.code == 0, inside_a_page.text
    run_row = ImportRun.objects.get()
    assert (run_row.status, run_row.members_done, run_row.page_offset) == ("paused", 280, 130)
    assert User.objects.count() == 280

    to_the_last_member = run("cio_import_users", "--segment", "1", "--resume", "--limit", "120")
    assert to_the_last_member.code == 0, to_the_last_member.text
    assert "Stopped at --limit" not in to_the_last_member.out
    run_row.refresh_from_db()
    assert (run_row.status, run_row.members_done, run_row.created) == ("finished", 400, 400)
    assert User.objects.count() == 400
    lookups = attribute_lookups(emulator)
    assert len(lookups) == len(set(lookups)) == 400 - 150
    assert tags_of(User.objects.get(email="person399@example.com")) == segments_of(399)

    nothing_left = run("cio_import_users", "--segment", "1", "--resume")
    assert "No unfinished import of segment 1 to resume" in nothing_left.error


def test_an_interrupted_run_resumes_where_it_stopped(emulator, segment):
    attribute_calls = []

    def press_ctrl_c_at_the_12th_attributes_call(sender, path, **kwargs):
        if path == "/v1/customers/attributes":
            attribute_calls.append(path)
            if len(attribute_calls) == 12:
                raise KeyboardInterrupt

    api_call_finished.connect(press_ctrl_c_at_the_12th_attributes_call, sender=CustomerIOClient)
    try:
        interrupted = run("cio_import_users", "--segment", "1")
    finally:
        api_call_finished.disconnect(press_ctrl_c_at_the_12th_attributes_call, sender=CustomerIOClient)

    assert interrupted.code == 130
    assert interrupted.error.endswith(
        "CommandError: Interrupted. The run's position is saved: continue it with --resume."
    )
    assert "1100 created" in interrupted.out
    run_row = ImportRun.objects.get()
    assert (run_row.status, run_row.members_done, run_row.created) == ("interrupted", 1100, 1100)
    assert User.objects.count() == 1100

    resumed = run("cio_import_users", "--segment", "1", "--resume")

    assert resumed.code == 0, resumed.text
    assert User.objects.count() == MEMBERS
    run_row.refresh_from_db()
    assert (run_row.status, run_row.created, run_row.members_done) == ("finished", MEMBERS, MEMBERS)
    # Only the 100 people of the step that was cut short were looked up twice.
    assert len(attribute_lookups(emulator)) == MEMBERS + 100


def test_an_interruption_just_after_a_step_committed_keeps_that_step_counted(emulator, segment, monkeypatch):
    """Ctrl-C (or SIGTERM) may land just after a step's commit: that step was written, so the run's row counts it,
    and the resumed run neither imports nor counts its members twice."""
    from users.services.accounts.people import NoPasswordSummary

    counted = []
    real_count = NoPasswordSummary.count

    def press_ctrl_c_after_the_second_steps_commit(summary, account):
        counted.append(account)
        if len(counted) == 200:  # the second step's last user, counted once its transaction has committed
            raise KeyboardInterrupt
        return real_count(summary, account)

    monkeypatch.setattr(NoPasswordSummary, "count", press_ctrl_c_after_the_second_steps_commit)
    interrupted = run("cio_import_users", "--segment", "1")
    monkeypatch.setattr(NoPasswordSummary, "count", real_count)

    assert interrupted.code == 130
    run_row = ImportRun.objects.get()
    assert User.objects.count() == 200
    assert (run_row.status, run_row.members_done, run_row.created) == ("interrupted", 200, 200)

    resumed = run("cio_import_users", "--segment", "1", "--resume")

    assert resumed.code == 0, resumed.text
    run_row.refresh_from_db()
    assert (run_row.status, run_row.created, run_row.members_done) == ("finished", MEMBERS, MEMBERS)
    assert User.objects.count() == MEMBERS


def test_customerio_going_down_mid_run_is_a_clear_line_and_resumable(emulator, segment):
    def fail_from_the_5th_attributes_call(sender, path, **kwargs):
        if path == "/v1/customers/attributes" and len(emulator.requests("/v1/customers/attributes")) == 4:
            emulator.set_faults(fail_rate=1.0, fail_status=503)

    api_call_finished.connect(fail_from_the_5th_attributes_call, sender=CustomerIOClient)
    try:
        failed = run("cio_import_users", "--segment", "1")
    finally:
        api_call_finished.disconnect(fail_from_the_5th_attributes_call, sender=CustomerIOClient)

    assert failed.code == 1
    last_line = failed.error
    assert last_line.startswith("CommandError: Customer.io is not answering: Customer.io POST /v1/customers/attributes")
    assert last_line.endswith("The run's position is saved: continue it with --resume.")
    assert "Traceback" not in failed.text
    assert ImportRun.objects.get().status == "failed"
    assert User.objects.count() == 400

    emulator.set_faults()
    resumed = run("cio_import_users", "--segment", "1", "--resume")
    assert resumed.code == 0, resumed.text
    assert User.objects.count() == MEMBERS


@pytest.mark.postgresql
def test_a_large_import_renews_postgresqls_statistics_of_the_users_before_the_tag_scan(emulator, monkeypatch):
    """Without it the planner still thinks the users table is as small as it was, and reads all of it for each
    membership page of the scan."""
    emulator.reset(population(300))
    monkeypatch.setattr("users.services.backfills.user_import.ANALYZE_FROM_CREATED", 200)

    with CaptureQueriesContext(connection) as queries:
        outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    statements = [query["sql"] for query in queries.captured_queries]
    analyzed = [n for n, sql in enumerate(statements) if sql.startswith("ANALYZE") and "users_user" in sql]
    assert len(analyzed) == 1
    # Before the scan's first look-up of a membership page's people.
    assert analyzed[0] < next(n for n, sql in enumerate(statements) if "string_to_array" in sql)

    emulator.clear_requests()
    with CaptureQueriesContext(connection) as queries:
        run("cio_import_users", "--segment", "1")  # nobody new: no ANALYZE
    assert not [query for query in queries.captured_queries if query["sql"].startswith("ANALYZE")]
