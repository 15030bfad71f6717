"""cio_import_users: a segment's members become users under the `add` webhook's rules, in bulk reads: created, or
matched to the user they already are (never twice, staff left alone), with the role and notification options; a bad
role or segment is refused before any write, and a dry run writes nothing."""

from collections import Counter

import pytest
from django.core import mail

from settings_app.models import FieldMapping
from users.models import ActivityLog, ImportRun, Role, User, UserTag

from .conftest import (
    MEMBERS,
    assert_reads_as_a_dry_run,
    cio_id,
    make_users,
    population,
    run,
    segments_of,
    tags_of,
    track_calls,
)

pytestmark = pytest.mark.django_db


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
