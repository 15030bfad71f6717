"""cio_pull_meta: attributes through the field mappings, 100 people per call."""

import pytest

from settings_app.models import FieldMapping
from users.models import ActivityLog, Role, User

from .conftest import (
    app_calls,
    assert_reads_as_a_dry_run,
    cio_id,
    make_users,
    map_plan_to_meta,
    person,
    population,
    run,
)

pytestmark = pytest.mark.django_db

USERS = 2000


@pytest.fixture
def site(emulator):
    """2,000 people, all site users with empty names: the first half linked by cio_id, the rest only by email."""
    emulator.reset(population(USERS))
    make_users(range(0, 1000))
    make_users(range(1000, USERS), linked=False)
    map_plan_to_meta()
    return emulator


def test_pull_applies_the_mappings_100_people_per_call(site):
    outcome = run("cio_pull_meta", "--all")

    assert outcome.code == 0, outcome.text
    assert f"0 created, {USERS} updated, 0 unchanged, 0 skipped, 0 failed" in outcome.out
    for n in (0, 999, 1000, 1999):
        user = User.objects.get(email=f"person{n}@example.com")
        assert (user.first_name, user.last_name, user.meta) == (f"First{n}", f"Last{n}", {"plan": "gold"})
        assert user.cio_id == cio_id(n)  # the users known only by email are linked now
    calls = app_calls(site)
    assert len(calls) == USERS // 100
    assert {(c["method"], c["path"]) for c in calls} == {("POST", "/v1/customers/attributes")}
    assert [c["query"]["id_type"] for c in calls] == ["cio_id"] * 10 + ["email"] * 10
    assert all(len(c["body"]["ids"]) == 100 for c in calls)
    line = ActivityLog.objects.get(user__email="person7@example.com")
    assert (
        line.message
        == "Pulled meta data from Customer.io for person7@example.com: first_name, last_name, meta.plan changed"
    )
    assert line.context == {
        "email": "person7@example.com",
        "first_name": "First7",
        "last_name": "Last7",
        "plan": "gold",
    }


def test_a_second_run_changes_nothing_and_goes_by_cio_id(site):
    run("cio_pull_meta", "--all")
    site.clear_requests()
    logged = ActivityLog.objects.count()

    again = run("cio_pull_meta", "--all")

    assert f"0 updated, {USERS} unchanged" in again.out
    assert ActivityLog.objects.count() == logged + 1  # the summary line
    assert [c["query"]["id_type"] for c in app_calls(site)] == ["cio_id"] * 20


def test_changes_in_customerio_are_pulled_and_roles_only_when_assignable(site):
    run("cio_pull_meta", "--all")
    FieldMapping.objects.create(cio_attribute="role", user_field="role")
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    Role.objects.create(slug="administrator", name="Administrator", webhook_assignable=False)
    site.load(
        {
            "customers": [
                {"email": "person5@example.com", "attributes": {"first_name": "Renamed", "role": "customer"}},
                {"email": "person6@example.com", "attributes": {"first_name": "First6", "role": "administrator"}},
            ]
        }
    )

    outcome = run("cio_pull_meta", "--all")

    assert f"1 updated, {USERS - 1} unchanged" in outcome.out
    five, six = User.objects.get(email="person5@example.com"), User.objects.get(email="person6@example.com")
    # The load replaced these people's attributes; fields whose attribute is absent are left as they were.
    assert (five.first_name, five.last_name, five.role.slug, five.meta) == (
        "Renamed",
        "Last5",
        "customer",
        {"plan": "gold"},
    )
    assert six.role.slug == "subscriber"
    assert ActivityLog.objects.filter(
        user=six, level="notice", message__startswith="Role 'administrator' may not be assigned"
    ).exists()


def test_named_users_and_users_missing_from_customerio(site):
    make_users([5000], linked=False)
    outcome = run("cio_pull_meta", "--user", "person3@example.com", "--user", "person5000@example.com")
    assert outcome.code == 0
    assert "1 updated, 0 unchanged, 1 skipped" in outcome.out
    assert "1 user(s) not found in Customer.io, left as they were: person5000@example.com" in outcome.out
    assert User.objects.get(email="person3@example.com").first_name == "First3"
    assert User.objects.get(email="person4@example.com").first_name == ""
    assert len(app_calls(site)) == 2  # one by cio_id, one by email


def test_dry_run_writes_nothing(site, activity_lines):
    FieldMapping.objects.create(cio_attribute="role", user_field="role")
    site.load({"customers": [person(3, role="nonexistent")]})
    outcome = run("cio_pull_meta", "--all", "--dry-run")
    assert f"Dry run (nothing written): 0 would be created, {USERS} would be updated" in outcome.out
    assert_reads_as_a_dry_run(outcome)
    assert activity_lines() == []  # not even the notice about the unknown role
    assert not User.objects.exclude(first_name="").exists()
    assert User.objects.filter(cio_id__isnull=True).count() == 1000
    assert not ActivityLog.objects.exists()
