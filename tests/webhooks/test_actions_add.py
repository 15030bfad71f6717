"""The add action, end to end against the emulator: the user the guide promises is created once whatever the email's
case (a non-ASCII local part is fine, an invalid address is refused), an existing user is updated instead, the role
comes from the URL or a mapped attribute, and the username from user_login or the chosen format."""

import pytest
from django.core import mail

from users.models import ActivityLog, Role, User
from users.signals import user_imported
from webhooks.models import WebhookDelivery

from .conftest import app_calls, make_user, set_settings, track_calls

pytestmark = pytest.mark.django_db


def test_add_creates_the_user_as_the_guide_promises(hook, emulator, django_capture_on_commit_callbacks):
    imported = []
    receiver = lambda sender, user, delivery, **kw: imported.append((user.email, delivery.pk))  # noqa: E731
    user_imported.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = hook("add")
    finally:
        user_imported.disconnect(receiver)
    assert response.status_code == 200, response.content
    body = response.json()
    user = User.objects.get()
    assert body == {
        "status": "ok",
        "action": "add",
        "user_id": user.pk,
        "created": True,
        "tags": ["Newsletter", "VIP"],
        "updated_fields": ["email", "first_name", "last_name"],
    }
    assert user.username == "ann@example.com"
    assert user.role.slug == "subscriber"
    assert (user.first_name, user.last_name) == ("Ann", "Smith")
    assert not user.is_staff and not user.is_superuser
    assert not user.has_usable_password()  # no Return Password field: nobody could know a generated one
    assert user.cio_id == emulator.customer("ann@example.com")["cio_id"]
    assert len(app_calls(emulator)) == 2 and track_calls(emulator) == []
    assert imported == [("ann@example.com", WebhookDelivery.objects.get().pk)]
    assert len(mail.outbox) == 0
    assert ActivityLog.objects.filter(message__startswith="Created user ann@example.com").exists()


def test_add_accepts_an_address_with_a_non_ascii_local_part(hook, emulator):
    """josé.x@example.com is a valid address (RFC 6531) that Customer.io accepts: such a person can be added."""
    emulator.add_customer(email="josé.x@example.com", attributes={"first_name": "José"}, segments=[1])

    response = hook("add", email="josé.x@example.com")

    assert response.status_code == 200, response.content
    assert response.json()["created"] is True
    user = User.objects.get()
    assert (user.email, user.username, user.first_name) == ("josé.x@example.com", "josé.x@example.com", "José")
    assert [tag.name for tag in user.tags.all()] == ["VIP"]
    assert hook("update_tags", email="JOSÉ.X@example.com").json()["status"] == "ok"


@pytest.mark.parametrize(
    "email",
    [
        "josé x@example.com",
        "jos\u200be@example.com",
        "josé\u00a0x@example.com",
        "josé@@example.com",
        "josé@",
        "josé.@x.com",
    ],
)
def test_a_genuinely_invalid_address_is_still_refused(hook, emulator, email):
    response = hook("add", email=email)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_contact", "detail": "'email' is not a valid email address."}
    assert User.objects.count() == 0


def test_add_for_an_unknown_contact(hook, emulator):
    response = hook("add", email="nobody@example.com")
    assert response.status_code == 422
    assert response.json()["error"] == "contact_not_found"
    assert User.objects.count() == 0
    assert WebhookDelivery.objects.get().status == "failed"


def test_add_twice_and_in_another_case_makes_one_user(hook, emulator):
    first = hook("add").json()
    second = hook("add").json()
    third = hook("add", email="ANN@Example.COM").json()
    assert first["created"] is True and second["created"] is False and third["created"] is False
    assert User.objects.count() == 1
    assert first["user_id"] == second["user_id"] == third["user_id"]


def test_add_for_an_existing_user_behaves_as_update(hook, emulator):
    user = make_user()
    response = hook("add", send_notification="true")
    assert response.json()["created"] is False
    user.refresh_from_db()
    assert user.first_name == "Ann" and user.check_password("original-pw")
    assert len(mail.outbox) == 0
    assert track_calls(emulator) == []


def test_add_with_role_customer_before_and_after_it_is_registered(hook, emulator):
    response = hook("add", role="customer")
    assert User.objects.get(pk=response.json()["user_id"]).role.slug == "subscriber"
    assert ActivityLog.objects.filter(message__contains="the role must be registered on your site").exists()

    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    response = hook("add", email="bob@example.com", role="customer")
    assert User.objects.get(pk=response.json()["user_id"]).role.slug == "customer"


def test_add_with_an_unassignable_role_falls_back_to_the_default(hook, emulator):
    Role.objects.create(slug="administrator", name="Administrator", webhook_assignable=False)
    response = hook("add", role="administrator")
    user = User.objects.get(pk=response.json()["user_id"])
    assert user.role.slug == "subscriber" and not user.is_staff


def test_a_mapped_role_attribute_wins_over_the_url(hook, emulator):
    from settings_app.models import FieldMapping

    FieldMapping.objects.create(cio_attribute="role", user_field="role")
    Role.objects.create(slug="customer", name="Customer", webhook_assignable=True)
    Role.objects.create(slug="member", name="Member", webhook_assignable=True)
    response = hook("add", email="cara+news@example.com", role="member")
    user = User.objects.get(pk=response.json()["user_id"])
    assert user.role.slug == "customer"
    assert user.username == "cara+news@example.com"


def test_a_mapped_user_pass_and_user_login_are_used_for_a_new_user(hook, emulator):
    from settings_app.models import FieldMapping

    FieldMapping.objects.filter(user_field__in=["password", "username"]).update(active=True)
    emulator.add_customer(email="ann@example.com", attributes={"user_login": "annie", "user_pass": "from-cio-Pa55"})
    set_settings(return_password_field="site_password")
    hook("add")
    user = User.objects.get()
    assert user.username == "annie"
    assert user.check_password("from-cio-Pa55")
    assert track_calls(emulator) == []  # only generated passwords are returned


def test_usernames_stay_valid_and_unique(hook, emulator):
    User.objects.create_user(username="ann@example.com", email="other@example.com", password="x")
    response = hook("add")
    assert User.objects.get(pk=response.json()["user_id"]).username == "ann@example.com2"


@pytest.mark.parametrize(("username_format", "expected"), [("flname", "AnnSmith"), ("fnamenum", "Ann")])
def test_username_formats(hook, emulator, username_format, expected):
    set_settings(username_format=username_format)
    response = hook("add")
    username = User.objects.get(pk=response.json()["user_id"]).username
    assert username.startswith(expected)
    if username_format == "fnamenum":
        assert 1 <= int(username.removeprefix("Ann")) <= 99999
