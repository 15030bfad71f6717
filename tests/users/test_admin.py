import pytest
from django.core import mail
from django.urls import reverse

from users.models import ActivityLog, Tag, User, UserTag

pytestmark = pytest.mark.django_db


def add_user_form(**overrides):
    data = {
        "username": "newbie",
        "email": "newbie@example.com",
        "usable_password": "true",
        "password1": "a-long-enough-Passw0rd",
        "password2": "a-long-enough-Passw0rd",
    }
    return {**data, **overrides}


def test_the_add_user_form_requires_an_email(admin_client):
    response = admin_client.post(reverse("admin:users_user_add"), add_user_form(email=""))
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not User.objects.filter(username="newbie").exists()


def test_the_add_user_form_refuses_an_email_that_differs_only_in_case(admin_client):
    response = admin_client.post(reverse("admin:users_user_add"), add_user_form(email="ADMIN@example.com"))
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


def test_a_user_added_in_the_admin_gets_the_default_role(admin_client):
    response = admin_client.post(reverse("admin:users_user_add"), add_user_form())
    assert response.status_code == 302
    assert User.objects.get(username="newbie").role.slug == "subscriber"


def test_an_address_with_a_non_ascii_local_part_is_accepted_and_a_bad_one_refused(admin_client):
    added = admin_client.post(reverse("admin:users_user_add"), add_user_form(email="josé.x@example.com"))
    assert added.status_code == 302
    user = User.objects.get(username="newbie")
    assert user.email == "josé.x@example.com"

    change = admin_client.get(reverse("admin:users_user_change", args=[user.pk]))
    assert change.status_code == 200 and "josé.x@example.com" in change.content.decode()
    bad = admin_client.post(
        reverse("admin:users_user_add"), add_user_form(username="other", email="jos\u200be@example.com")
    )
    assert bad.status_code == 200
    assert "Enter a valid email address." in bad.content.decode()
    assert not User.objects.filter(username="other").exists()


def test_the_password_reset_form_accepts_a_non_ascii_local_part(client):
    User.objects.create_user(username="jose", email="josé.x@example.com", password="a-long-enough-Passw0rd")
    response = client.post(reverse("password_reset"), {"email": "josé.x@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["josé.x@example.com"]


def test_the_user_list_shows_role_and_tags(admin_client):
    user = User.objects.create_user(username="ann", email="ann@example.com", password="x")
    UserTag.objects.create(user=user, tag=Tag.objects.create(segment_id=7, name="VIP"))
    page = admin_client.get(reverse("admin:users_user_changelist")).content.decode()
    assert "Subscriber" in page and "VIP" in page
    assert admin_client.get(reverse("admin:users_user_change", args=[user.pk])).status_code == 200


def test_the_activity_log_is_read_only(admin_client):
    entry = ActivityLog.objects.create(source="webhook", message="Loaded tags: VIP")
    assert admin_client.get(reverse("admin:users_activitylog_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:users_activitylog_add")).status_code == 403
    response = admin_client.post(reverse("admin:users_activitylog_change", args=[entry.pk]), {"message": "edited"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.message == "Loaded tags: VIP"


@pytest.mark.parametrize("model", ["role", "tag", "user", "activitylog"])
def test_every_users_model_has_a_working_changelist(admin_client, model):
    assert admin_client.get(reverse(f"admin:users_{model}_changelist")).status_code == 200
