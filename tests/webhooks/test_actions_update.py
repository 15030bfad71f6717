"""The update action, end to end against the emulator: an existing user's mapped attributes, then their tags, are
pulled from Customer.io (never their password), and their role changes only to an assignable one; no action (add,
update or update_tags) touches a staff account."""

import json

import pytest
from django.contrib.auth.models import Group

from users.models import ActivityLog, Role, User

from .conftest import app_calls, make_user

pytestmark = pytest.mark.django_db


def test_update_pulls_mapped_attributes_then_tags(hook, emulator):
    from settings_app.models import FieldMapping

    FieldMapping.objects.create(cio_attribute="plan", user_field="meta.plan")
    FieldMapping.objects.filter(user_field="password").update(active=True)  # user_pass mapped...
    user = make_user()
    response = hook("update")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["tags"] == ["Newsletter", "VIP"]
    assert sorted(body["updated_fields"]) == ["first_name", "last_name", "meta.plan"]
    user.refresh_from_db()
    assert (user.first_name, user.last_name, user.meta) == ("Ann", "Smith", {"plan": "gold"})
    assert user.check_password("original-pw")  # ...but never changes an existing user's password
    assert len(app_calls(emulator)) == 2
    log = ActivityLog.objects.get(message__startswith="Loaded meta data from Customer.io")
    assert "from-cio-Pa55" not in log.message + json.dumps(log.context)
    assert "first_name: Ann" in log.message


def test_update_for_someone_who_never_joined(hook, emulator):
    response = hook("update", email="stranger@example.com")
    assert response.json() == {"status": "skipped", "action": "update", "reason": "no_matching_user"}
    assert emulator.requests() == []


def test_update_changes_the_role_only_to_an_assignable_one(hook, emulator):
    user = make_user()
    response = hook("update", role="customer")
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.role.slug == "subscriber"
    assert ActivityLog.objects.filter(level="notice", message__contains="must be registered on your site").exists()

    group = Group.objects.create(name="Customers")
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True, group=group)
    hook("update", role="customer")
    user.refresh_from_db()
    assert user.role.slug == "customer"
    assert list(user.groups.values_list("name", flat=True)) == ["Customers"]

    Role.objects.create(slug="editor", name="Editor", webhook_assignable=False)
    hook("update", role="editor")
    user.refresh_from_db()
    assert user.role.slug == "customer"


@pytest.mark.parametrize("action", ["add", "update", "update_tags"])
def test_staff_accounts_are_never_touched(hook, emulator, action):
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    admin = User.objects.create_user(
        username="admin", email="ann@example.com", password="admin-pw", is_staff=True, first_name="Boss"
    )
    response = hook(action, role="customer")
    assert response.status_code == 200
    assert response.json()["reason"] == "protected_account"
    admin.refresh_from_db()
    assert (admin.role.slug, admin.first_name, admin.is_staff) == ("subscriber", "Boss", True)
    assert admin.check_password("admin-pw")
    assert admin.tags.count() == 0
    assert User.objects.count() == 1
