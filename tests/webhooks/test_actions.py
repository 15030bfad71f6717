"""update_tags, update and add, end to end against the emulator."""

import json
import logging

import pytest
from django.contrib.auth.models import Group
from django.core import mail

from users.models import ActivityLog, Role, Tag, User
from users.signals import tags_applied, tags_modified, tags_removed, user_imported
from webhooks.models import WebhookDelivery

from .conftest import set_settings

pytestmark = pytest.mark.django_db


def make_user(email="ann@example.com", **extra):
    return User.objects.create_user(username=email, email=email, password="original-pw", **extra)


def app_calls(emulator):
    return [(r["method"], r["path"]) for r in emulator.requests("/v1/")]


def track_calls(emulator):
    return [r for r in emulator.requests("/api/")]


# update_tags ------------------------------------------------------------------------------------------------------


def test_update_tags_replaces_the_users_tags_with_one_call(hook, emulator):
    user = make_user()
    stale = Tag.objects.create(segment_id=99, name="Old")
    user.tags.add(stale)
    response = hook("update_tags")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "action": "update_tags",
        "user_id": user.pk,
        "created": False,
        "tags": ["Newsletter", "VIP"],
        "updated_fields": [],
    }
    assert sorted(user.tags.values_list("segment_id", flat=True)) == [1, 2]
    assert app_calls(emulator) == [("GET", "/v1/customers/ann@example.com/segments")]
    assert ActivityLog.objects.filter(message__startswith="Loaded tags for ann@example.com: Newsletter, VIP").exists()
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_update_tags_for_someone_who_never_joined(hook, emulator):
    response = hook("update_tags", email="stranger@example.com")
    assert response.status_code == 200
    assert response.json() == {"status": "skipped", "action": "update_tags", "reason": "no_matching_user"}
    assert ActivityLog.objects.get(level="notice").message.startswith("No matching user found for stranger@example.com")
    assert emulator.requests() == []
    assert WebhookDelivery.objects.get().status == "skipped"


def test_tags_are_matched_by_segment_id_and_named_from_customerio(hook, emulator):
    Tag.objects.create(segment_id=1, name="Renamed locally")
    make_user()
    hook("update_tags")
    assert Tag.objects.get(segment_id=1).name == "VIP"
    assert Tag.objects.count() == 2


def test_tag_signals_fire_on_commit_with_the_differences(hook, emulator, django_capture_on_commit_callbacks):
    user = make_user()
    events = []
    receivers = {
        "applied": lambda sender, user, tags, **kw: events.append(("applied", sorted(t.name for t in tags))),
        "removed": lambda sender, user, tags, **kw: events.append(("removed", sorted(t.name for t in tags))),
        "modified": lambda sender, user, tags, **kw: events.append(("modified", sorted(t.name for t in tags))),
    }
    tags_applied.connect(receivers["applied"])
    tags_removed.connect(receivers["removed"])
    tags_modified.connect(receivers["modified"])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            hook("update_tags")
        assert events == [("applied", ["Newsletter", "VIP"]), ("modified", ["Newsletter", "VIP"])]
        events.clear()
        emulator.add_customer(email="ann@example.com", segments=[2, 3])
        with django_capture_on_commit_callbacks(execute=True):
            hook("update_tags")
        assert events == [
            ("applied", ["Active customers"]),
            ("removed", ["VIP"]),
            ("modified", ["Active customers", "Newsletter"]),
        ]
        events.clear()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            hook("update_tags")
        assert events == []  # nothing before the commit
        for callback in callbacks:
            callback()
        assert events == [("modified", ["Active customers", "Newsletter"])]
    finally:
        tags_applied.disconnect(receivers["applied"])
        tags_removed.disconnect(receivers["removed"])
        tags_modified.disconnect(receivers["modified"])
    assert user.tags.count() == 2


# update -----------------------------------------------------------------------------------------------------------


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


# add --------------------------------------------------------------------------------------------------------------


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


# Return Password ------------------------------------------------------------------------------------------------


def everything_stored_and_logged(response, caplog) -> str:
    deliveries = [json.dumps(row, default=str) for row in WebhookDelivery.objects.values()]
    logs = [json.dumps(row, default=str) for row in ActivityLog.objects.values()]
    return "\n".join([response.content.decode(), caplog.text, *deliveries, *logs, *(m.body for m in mail.outbox)])


def test_return_password_writes_the_chosen_field_and_nowhere_else(hook, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    set_settings(return_password=True, return_password_field="site_password")
    response = hook("add")
    assert response.status_code == 200, response.content
    [put] = track_calls(emulator)
    cio_id = emulator.customer("ann@example.com")["cio_id"]
    assert (put["method"], put["path"]) == ("PUT", f"/api/v1/customers/cio_{cio_id}")  # the person, whatever email
    assert put["body"]["_update"] is True and set(put["body"]) == {"site_password", "_update"}
    password = emulator.customer("ann@example.com")["attributes"]["site_password"]
    assert len(password) >= 16
    user = User.objects.get()
    assert user.check_password(password)
    assert not user.password_return_due
    assert ActivityLog.objects.filter(message="Returned generated password to Customer.io field site_password").exists()
    assert password not in everything_stored_and_logged(response, caplog)
    assert len(app_calls(emulator)) == 2


def test_return_password_on_without_a_field_returns_nothing(hook, emulator):
    set_settings(return_password=True, return_password_field="")
    hook("add")
    assert track_calls(emulator) == []
    assert not User.objects.get().has_usable_password()


def test_a_failed_password_return_is_retried_with_a_fresh_password(hook, emulator, caplog):
    set_settings(return_password=True, return_password_field="site_password")
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/", method="PUT")
    headers = {"x-cio-idempotency-key": "delivery-1"}
    first = hook("add", headers=headers)
    assert first.status_code == 502
    assert first.json()["error"] == "upstream_error"
    user = User.objects.get()
    assert user.password_return_due
    assert WebhookDelivery.objects.get().status == "failed"

    emulator.set_faults()
    again = hook("add", headers=headers)
    assert again.status_code == 200, again.content
    assert again.json()["created"] is False
    user.refresh_from_db()
    password = emulator.customer("ann@example.com")["attributes"]["site_password"]
    assert user.check_password(password)
    assert not user.password_return_due
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert password not in everything_stored_and_logged(again, caplog)


def test_a_user_who_logged_in_meanwhile_keeps_their_password(hook, emulator):
    from django.utils import timezone

    set_settings(return_password=True, return_password_field="site_password")
    emulator.set_faults(fail_rate=1.0, fail_status=500, path_prefix="/api/", method="PUT")
    hook("add")
    user = User.objects.get()
    user.set_password("chosen-by-them")
    user.last_login = timezone.now()
    user.save()
    emulator.set_faults()
    emulator.clear_requests()
    assert hook("update_tags").status_code == 200
    user.refresh_from_db()
    assert user.check_password("chosen-by-them") and not user.password_return_due
    assert track_calls(emulator) == []


# Welcome email --------------------------------------------------------------------------------------------------


def test_welcome_mail_only_when_asked(hook, emulator):
    hook("add")
    assert len(mail.outbox) == 0
    hook("add", email="bob@example.com", send_notification="false")
    assert len(mail.outbox) == 0
    hook("add", email="cara+news@example.com", send_notification="true")
    assert [m.to for m in mail.outbox] == [["cara+news@example.com"]]


def test_the_welcome_setting_sends_mail_without_the_parameter(hook, emulator):
    set_settings(send_welcome_email=True)
    hook("add")
    assert len(mail.outbox) == 1


def test_the_welcome_mail_has_a_working_set_password_link(hook, emulator, client, settings):
    settings.SITE_BASE_URL = "https://mydomain.com"
    set_settings(return_password=True, return_password_field="site_password")
    hook("add", send_notification="true")
    [message] = mail.outbox
    password = emulator.customer("ann@example.com")["attributes"]["site_password"]
    assert password not in message.body
    assert "ann@example.com" in message.body  # the username
    link = next(line for line in message.body.splitlines() if "/accounts/reset/" in line).strip()
    assert link.startswith("https://mydomain.com/accounts/reset/")
    path = link.removeprefix("https://mydomain.com")
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200 and b"new_password1" in form_page.content
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "A-brand-new-passw0rd", "new_password2": "A-brand-new-passw0rd"},
    )
    assert done.status_code == 302
    assert User.objects.get().check_password("A-brand-new-passw0rd")


# Customer.io trouble --------------------------------------------------------------------------------------------


def test_customerio_down_is_a_502_and_leaves_no_half_user(hook, emulator, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 1
    emulator.set_faults(fail_rate=1.0, fail_status=503, path_prefix="/v1/customers/ann@example.com/segments")
    response = hook("add")
    assert response.status_code in (502,)
    assert response.json()["error"] == "upstream_error"
    assert User.objects.count() == 0  # the segments call failed after the attributes call: all rolled back


def test_the_sync_deadline_answers_502_in_time(hook, emulator, settings):
    settings.WEBHOOK_SYNC_DEADLINE = 0.5
    make_user()
    emulator.set_faults(latency_ms=2000)
    response = hook("update_tags")
    assert response.status_code == 502


def test_calls_per_action(hook, emulator):
    set_settings(return_password=True, return_password_field="site_password")
    counts = {}
    for action, email in [
        ("test", "ann@example.com"),
        ("add", "ann@example.com"),
        ("update", "ann@example.com"),
        ("update_tags", "ann@example.com"),
    ]:
        emulator.clear_requests()
        assert hook(action, email=email).status_code == 200
        counts[action] = emulator.call_counts()
    assert counts["test"] == {}
    assert counts["add"] == {"app": 2, "track": 1}
    assert counts["update"] == {"app": 2}
    assert counts["update_tags"] == {"app": 1}
