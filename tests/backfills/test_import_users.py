"""cio_import_users: a segment's members become users under the `add` webhook's rules, in bulk and resumably."""

import json
import logging
from collections import Counter

import pytest
from django.core import mail

from cio.client import CustomerIOClient
from cio.transport import api_call_finished
from settings_app.models import FieldMapping
from users.models import ActivityLog, ImportRun, Role, User, UserTag

from .conftest import (
    SEGMENTS,
    assert_reads_as_a_dry_run,
    cio_id,
    make_users,
    map_plan_to_meta,
    population,
    run,
    segments_of,
    set_site_settings,
    tags_of,
    track_calls,
)

pytestmark = pytest.mark.django_db

MEMBERS = 2000


@pytest.fixture
def segment(emulator):
    """2,000 people in segment 1 (and some of them in segments 2-5)."""
    emulator.reset(population(MEMBERS))
    map_plan_to_meta()
    return 1


def attribute_lookups(emulator) -> list[str]:
    """Every identifier whose attributes were asked for, in order."""
    return [i for call in emulator.requests("/v1/customers/attributes") for i in call["body"]["ids"]]


def test_every_member_becomes_a_user_under_the_add_rules(
    emulator, segment, signal_log, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    assert f"{MEMBERS} created, 0 updated, 0 unchanged, 0 skipped, 0 failed" in outcome.out
    assert User.objects.count() == MEMBERS
    user = User.objects.get(email="person30@example.com")
    assert user.username == "person30@example.com"
    assert user.role.slug == "subscriber"
    assert (user.first_name, user.last_name, user.meta) == ("First30", "Last30", {"plan": "gold"})
    assert user.cio_id == cio_id(30)
    assert not user.has_usable_password()  # Return Password has no field: nobody could know a generated one
    assert not user.is_staff and not user.password_return_due and not user.welcome_email_due
    assert tags_of(user) == segments_of(30)
    assert UserTag.objects.count() == sum(len(segments_of(n)) for n in range(MEMBERS))
    assert len(signal_log.imported) == MEMBERS
    assert len(mail.outbox) == 0
    assert ActivityLog.objects.filter(
        user=user, message="Created user person30@example.com (person30@example.com) with role Subscriber"
    ).exists()

    # Bulk reads only: the segment list, one membership page, 20 attribute calls, one page per segment for tags.
    paths = Counter(call["path"] for call in emulator.requests("/v1/"))
    assert paths == {
        "/v1/segments": 1,
        "/v1/customers/attributes": MEMBERS // 100,
        "/v1/segments/1/membership": 2,
        **{f"/v1/segments/{n}/membership": 1 for n in range(2, 6)},
    }
    assert track_calls(emulator) == []
    run_row = ImportRun.objects.get()
    assert (run_row.status, run_row.members_done, run_row.created) == ("finished", MEMBERS, MEMBERS)


def test_running_it_again_imports_nobody_twice(emulator, segment):
    run("cio_import_users", "--segment", "1")
    emulator.load({"customers": [{"email": "person8@example.com", "attributes": {"first_name": "Eight"}}]})

    again = run("cio_import_users", "--segment", "1")

    assert again.code == 0, again.text
    assert f"0 created, 1 updated, {MEMBERS - 1} unchanged" in again.out
    assert User.objects.count() == MEMBERS
    assert User.objects.get(email="person8@example.com").first_name == "Eight"
    assert ImportRun.objects.filter(status="finished").count() == 2


def test_existing_users_are_updated_never_duplicated_and_staff_left_alone(emulator, segment):
    [existing] = make_users([5], linked=False)
    existing.email = "PERSON5@Example.com"
    existing.save()
    admin = User.objects.create_user(username="admin", email="person6@example.com", password="x", is_staff=True)

    outcome = run("cio_import_users", "--segment", "1")

    assert f"{MEMBERS - 2} created, 1 updated, 0 unchanged, 1 skipped" in outcome.out
    assert User.objects.count() == MEMBERS
    existing.refresh_from_db()
    assert (existing.first_name, existing.cio_id, existing.password) == ("First5", cio_id(5), "!unusable")
    admin.refresh_from_db()
    assert admin.first_name == "" and admin.tags.count() == 0 and admin.check_password("x")


def test_role_and_notification_options(emulator, settings):
    emulator.reset(population(20))
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    FieldMapping.objects.create(cio_attribute="role", user_field="role")
    emulator.load({"customers": [{"email": "person3@example.com", "attributes": {"role": "nonexistent"}}]})

    outcome = run("cio_import_users", "--segment", "1", "--role", "customer", "--send-notification")

    assert outcome.code == 0, outcome.text
    assert set(User.objects.values_list("role__slug", flat=True)) == {"customer", "subscriber"}
    assert User.objects.get(email="person3@example.com").role.slug == "subscriber"  # its mapped role falls back
    assert ActivityLog.objects.filter(level="notice", message__contains="'nonexistent' does not exist").exists()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(f"person{n}@example.com" for n in range(20))


def test_role_moves_existing_members_too_as_the_help_says(emulator):
    """--role is the add webhook's role=: it applies to members who are users already, and the help says so."""
    from users.management.commands.cio_import_users import Command

    emulator.reset(population(3))
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    [existing] = make_users([1])
    assert existing.role.slug == "subscriber"

    outcome = run("cio_import_users", "--segment", "1", "--role", "customer")

    assert outcome.code == 0, outcome.text
    existing.refresh_from_db()
    assert existing.role.slug == "customer"
    help_text = " ".join(Command().create_parser("manage.py", "cio_import_users").format_help().split())
    assert "new users get it and existing users are moved to it" in help_text


def test_a_mapped_user_login_and_user_pass_are_used_for_new_users_only(emulator):
    emulator.reset(population(30))
    FieldMapping.objects.filter(user_field__in=["password", "username"]).update(active=True)
    emulator.load(
        {
            "customers": [
                {
                    "email": f"person{n}@example.com",
                    "attributes": {"user_login": f"login{n}", "user_pass": f"Pass-{n}-word"},
                }
                for n in range(30)
            ]
        }
    )
    [existing] = make_users([3])

    outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    assert "29 created" in outcome.out
    created = User.objects.get(email="person7@example.com")
    assert created.username == "login7"
    assert created.check_password("Pass-7-word")  # hashed in the worker processes
    existing.refresh_from_db()
    assert (existing.username, existing.password) == ("person3@example.com", "!unusable")
    assert track_calls(emulator) == []  # only generated passwords are returned


def test_an_unusable_role_is_refused_before_any_call(emulator, segment):
    Role.objects.create(slug="administrator", name="Administrator", webhook_assignable=False)
    outcome = run("cio_import_users", "--segment", "1", "--role", "administrator")
    assert outcome.code == 1
    assert outcome.err.strip() == (
        "CommandError: Role 'administrator' may not be assigned by webhooks (not marked webhook assignable)."
    )
    assert emulator.requests() == []


def test_an_unknown_segment_is_one_clear_line(emulator, segment):
    outcome = run("cio_import_users", "--segment", "42")
    assert outcome.code == 1
    assert outcome.out == ""
    assert outcome.error == (
        "CommandError: Customer.io has no segment 42 (cio_sync_segments lists the segments as tags)."
    )
    assert "Traceback" not in outcome.text
    assert not ImportRun.objects.exists()


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


def test_dry_run_writes_nothing(emulator, segment, activity_lines):
    make_users([7], linked=False)
    FieldMapping.objects.create(cio_attribute="role", user_field="role")
    emulator.load({"customers": [{"email": "person3@example.com", "attributes": {"role": "nonexistent"}}]})
    outcome = run("cio_import_users", "--segment", "1", "--dry-run", "--send-notification")

    assert outcome.code == 0, outcome.text
    assert f"Dry run (nothing written): {MEMBERS - 1} would be created, 1 would be updated" in outcome.out
    assert "Tags: would be changed for" in outcome.out
    assert "Members of segment 1 that would be imported" in outcome.err
    assert_reads_as_a_dry_run(outcome)
    assert activity_lines() == []  # not even the notice about the unknown role
    assert User.objects.count() == 1
    assert User.objects.get().first_name == ""
    assert not ImportRun.objects.exists()
    assert not ActivityLog.objects.exists()
    assert not UserTag.objects.exists()
    assert track_calls(emulator) == []
    assert len(mail.outbox) == 0


def everything_printed_stored_and_logged(outcome, caplog) -> str:
    logs = [json.dumps(row, default=str) for row in ActivityLog.objects.values()]
    runs = [json.dumps(row, default=str) for row in ImportRun.objects.values()]
    return "\n".join([outcome.text, caplog.text, *logs, *runs, *(m.body for m in mail.outbox)])


@pytest.mark.slow
def test_return_password_goes_by_batch_and_a_207_leaves_those_users_owing(emulator, caplog):
    """Return Password on with a field: generated passwords are hashed on the machine's cores and returned with
    /api/v2/batch. Customer.io refuses three of them (207): those users owe a return, which the next run settles."""
    caplog.set_level(logging.DEBUG)
    emulator.reset(
        {
            "segments": SEGMENTS,
            "customers": [{"email": f"p{n}@example.com", "cio_id": cio_id(n), "segments": [1]} for n in range(300)],
        }
    )
    set_site_settings(return_password=True, return_password_field="site_password")
    refused = [cio_id(7), cio_id(150), cio_id(299)]
    emulator.set_faults(reject_identifiers=refused)

    outcome = run("cio_import_users", "--segment", "1", "--send-notification")

    assert outcome.code == 1
    assert "300 created, 0 updated, 0 unchanged, 0 skipped, 3 failed" in outcome.out
    assert outcome.error.endswith("CommandError: 3 failed; Users → Activity logs in the admin says why.")
    [batch] = track_calls(emulator)
    assert batch["path"] == "/api/v2/batch" and len(batch["body"]["batch"]) == 300
    returned = {op["identifiers"]["cio_id"]: op["attributes"]["site_password"] for op in batch["body"]["batch"]}
    for user in User.objects.all():
        if user.cio_id in refused:
            assert user.password_return_due  # its password is one nobody knows, replaced by the next return
        else:
            assert not user.password_return_due
            assert user.check_password(emulator.customer(f"cio_{user.cio_id}")["attributes"]["site_password"])
    assert (
        ActivityLog.objects.filter(
            level="error",
            message__startswith="Could not return the generated password to Customer.io field site_password",
        ).count()
        == 3
    )
    # The welcome email waits until the password is final.
    assert len(mail.outbox) == 297
    seen = everything_printed_stored_and_logged(outcome, caplog)
    assert all(password not in seen for password in returned.values())

    emulator.set_faults()
    emulator.clear_requests()
    again = run("cio_import_users", "--segment", "1")

    assert again.code == 0, again.text
    assert "0 created, 0 updated, 300 unchanged, 0 skipped, 0 failed" in again.out
    [retry] = track_calls(emulator)
    assert sorted(op["identifiers"]["cio_id"] for op in retry["body"]["batch"]) == refused
    for cio in refused:
        user = User.objects.get(cio_id=cio)
        assert not user.password_return_due
        assert user.check_password(emulator.customer(f"cio_{cio}")["attributes"]["site_password"])
    assert len(mail.outbox) == 300
    seen = everything_printed_stored_and_logged(again, caplog)
    assert all(op["attributes"]["site_password"] not in seen for op in retry["body"]["batch"])


def test_users_imported_without_a_password_are_told_in_one_line_per_run(emulator):
    """Return Password on with no field (the default): nobody could know a generated password. One summary line,
    not one notice per user; a webhook-created user still gets their own line (test_delivery_activity)."""
    emulator.reset(population(150))

    outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    assert not User.objects.filter(password__startswith="argon2").exists()
    notices = list(ActivityLog.objects.filter(message__contains="no usable password").values_list("message", "user"))
    assert notices == [
        (
            "150 new user(s) have no usable password (Return Password is on but no Customer.io field is chosen): "
            "they can log in only after setting one, 150 through a password reset (no welcome email is sent).",
            None,
        )
    ]
