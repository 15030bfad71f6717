"""cio_push_users: users' mapped fields -> Customer.io, in /api/v2/batch requests."""

import pytest

from settings_app import freshness
from settings_app.models import FieldMapping
from users.models import ActivityLog, User

from .conftest import assert_reads_as_a_dry_run, cio_id, make_users, map_plan_to_meta, run, track_calls

pytestmark = pytest.mark.django_db

USERS = 2000


@pytest.fixture
def site(emulator):
    """2,000 people in Customer.io with no names; the site's users have names and a plan. The first half are
    linked by cio_id, the rest only by email."""
    emulator.reset({"customers": [{"email": f"person{n}@example.com", "cio_id": cio_id(n)} for n in range(USERS)]})
    make_users(range(0, 1000), named=True, meta={"plan": "silver"})
    make_users(range(1000, USERS), linked=False, named=True, meta={"plan": "silver"})
    map_plan_to_meta()
    # Every mapping both ways (the seeded push-only dates aside), the password's included: mapped, yet never pushed.
    FieldMapping.objects.filter(direction=FieldMapping.Direction.PUSH).update(active=False)
    FieldMapping.objects.update(direction=FieldMapping.Direction.BOTH)
    FieldMapping.objects.filter(user_field="password").update(active=True)
    freshness.changed("field_mappings")
    return emulator


def test_push_sends_mapped_fields_in_one_batch_request(site):
    outcome = run("cio_push_users", "--all")

    assert outcome.code == 0, outcome.text
    assert f"0 created, {USERS} updated, 0 unchanged, 0 skipped, 0 failed" in outcome.out
    assert "Customer.io calls used: 1 (0 App API, 1 Track API)" in outcome.out
    [batch] = track_calls(site)
    operations = batch["body"]["batch"]
    assert operations[0] == {
        "type": "person",
        "identifiers": {"cio_id": "cio00000"},
        "action": "identify",
        "attributes": {"email": "person0@example.com", "first_name": "First0", "plan": "silver", "_update": True},
    }
    assert operations[1500]["identifiers"] == {"email": "person1500@example.com"}
    assert not any("user_pass" in operation["attributes"] for operation in operations)
    assert not any("last_name" in operation["attributes"] for operation in operations)  # empty: not sent
    stored = site.customer("person1999@example.com")["attributes"]
    assert (stored["first_name"], stored["plan"]) == ("First1999", "silver")


def test_a_changed_email_updates_the_right_person(site):
    user = User.objects.get(email="person7@example.com")
    user.email = "new.address@example.com"
    user.save()

    run("cio_push_users", "--user", "new.address@example.com")

    assert site.customer("person7@example.com") is None
    assert site.customer("new.address@example.com")["cio_id"] == "cio00007"


def test_refused_operations_fail_only_those_users(site):
    site.set_faults(reject_identifiers=["cio00003", "person1004@example.com"])

    outcome = run("cio_push_users", "--all")

    assert outcome.code == 1
    assert f"{USERS - 2} updated, 0 unchanged, 0 skipped, 2 failed" in outcome.out
    assert outcome.error.endswith("CommandError: 2 failed; Users → Activity logs in the admin says why.")
    refused = ActivityLog.objects.filter(level="error").order_by("user__email")
    assert [line.user.email for line in refused] == ["person1004@example.com", "person3@example.com"]
    assert "first_name" not in site.customer("person3@example.com")["attributes"]
    assert site.customer("person4@example.com")["attributes"]["first_name"] == "First4"


def test_dry_run_sends_nothing(site, activity_lines):
    outcome = run("cio_push_users", "--all", "--dry-run")
    assert outcome.code == 0
    assert f"Dry run (nothing written): 0 would be created, {USERS} would be updated" in outcome.out
    assert_reads_as_a_dry_run(outcome)
    assert track_calls(site) == []
    assert not ActivityLog.objects.exists()
    assert activity_lines() == []


def test_missing_track_credentials_are_one_clear_line(emulator, settings):
    settings.CUSTOMERIO_TRACK_API_KEY = ""
    outcome = run("cio_push_users", "--all")
    assert outcome.code == 1
    assert outcome.err.strip() == (
        "CommandError: Customer.io is not configured: Customer.io Track API credentials are not set "
        "(CUSTOMERIO_SITE_ID, _TRACK_API_KEY)."
    )
