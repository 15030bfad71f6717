import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from settings_app import access_keys
from settings_app.models import FieldMapping, WebhookSettings
from users.models import ActivityLog

pytestmark = pytest.mark.django_db


def test_the_access_key_is_generated_once_and_kept():
    first = WebhookSettings.load().access_key
    assert len(first) >= 32
    assert WebhookSettings.load().access_key == first
    assert WebhookSettings.objects.get().access_key == first


def test_regenerate_makes_a_new_strong_key():
    settings_row = WebhookSettings.load()
    old = settings_row.access_key
    access_keys.rotate(settings_row)
    assert WebhookSettings.load().access_key != old
    assert not WebhookSettings.load().access_key_is_weak


@pytest.mark.parametrize(
    ("key", "valid", "weak"),
    [("1234567", False, None), ("a1b2c3d4", True, True), ("x" * 31, True, True), ("y" * 32, True, False)],
)
def test_access_key_length_rules(key, valid, weak):
    settings_row = WebhookSettings.load()
    settings_row.access_key = key
    if not valid:
        with pytest.raises(ValidationError, match="at least 8"):
            settings_row.full_clean()
        return
    settings_row.full_clean()
    assert settings_row.access_key_is_weak is weak


def test_a_key_with_characters_that_need_url_escaping_is_refused():
    settings_row = WebhookSettings.load()
    settings_row.access_key = "abc def&ghi"
    with pytest.raises(ValidationError):
        settings_row.full_clean()


def test_defaults_match_wp_fusion():
    settings_row = WebhookSettings.load()
    assert settings_row.return_password is True
    assert settings_row.return_password_field == ""
    assert settings_row.return_password_misconfigured
    assert settings_row.send_welcome_email is False
    assert settings_row.username_format == "email"
    assert settings_row.process_in_background is False


def test_default_field_mappings_are_seeded():
    rows = set(FieldMapping.objects.values_list("cio_attribute", "user_field", "active", "direction"))
    assert rows == {
        ("email", "email", True, "pull"),
        ("first_name", "first_name", True, "pull"),
        ("last_name", "last_name", True, "pull"),
        ("user_login", "username", False, "pull"),
        ("user_pass", "password", False, "pull"),
        # The site's own dates go to Customer.io (created_at is its sign-up time).
        ("created_at", "date_joined", True, "push"),
        ("last_login", "last_login", True, "push"),
    }


def test_field_mapping_validates_the_user_field():
    with pytest.raises(ValidationError, match="not a user field"):
        FieldMapping(cio_attribute="plan", user_field="is_staff").full_clean()
    FieldMapping(cio_attribute="plan", user_field="meta.plan").full_clean()
    with pytest.raises(ValidationError, match="looks like a password"):
        FieldMapping(cio_attribute="user_pass", user_field="meta.pw").full_clean()
    with pytest.raises(ValidationError, match="already fills first_name"):
        FieldMapping(cio_attribute="First Name", user_field="first_name").full_clean()


def test_webhook_urls_command_prints_the_four_urls_with_the_current_key(capsys):
    key = WebhookSettings.load().access_key
    call_command("webhook_urls", "--base-url", "https://mydomain.com")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"update_tags https://mydomain.com/?wpf_action=update_tags&access_key={key}",
        f"update https://mydomain.com/?wpf_action=update&access_key={key}",
        f"add https://mydomain.com/?wpf_action=add&access_key={key}",
        f"test https://mydomain.com/?wpf_action=test&access_key={key}",
    ]


@pytest.mark.parametrize("base_url", ["mydomain.com", "mydomain.com/shop", "ftp://mydomain.com", "https://"])
def test_webhook_urls_refuses_a_base_url_without_scheme_or_host(capsys, base_url):
    with pytest.raises(CommandError) as refused:
        call_command("webhook_urls", "--base-url", base_url)
    assert str(refused.value) == (
        f"--base-url must start with https:// or http:// and name the host, e.g. https://mydomain.com "
        f"(got {base_url!r})."
    )
    assert capsys.readouterr().out == ""


def test_the_settings_page_shows_the_urls_and_warns_about_a_missing_return_field(admin_client):
    key = WebhookSettings.load().access_key
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert f"/?wpf_action=update_tags&amp;access_key={key}" in page
    assert "no Customer.io field is chosen" in page
    assert "Regenerate access key" in page
    assert "is weak" not in page


def test_the_settings_page_warns_about_a_weak_key(admin_client):
    WebhookSettings.load()
    WebhookSettings.objects.update(access_key="abcd1234")
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert "is weak" in page


def test_the_settings_page_accepts_a_wp_fusion_key_as_a_rotation(admin_client):
    generated = WebhookSettings.load().access_key
    form = {
        "new_access_key": "a1b2c3d4",
        "username_format": "email",
        "login_link_lifetime_hours": "72",
        "return_password": "on",
        "return_password_field": "site_password",
    }
    response = admin_client.post(reverse("admin:settings_app_webhooksettings_change"), form)
    assert response.status_code == 302
    saved = WebhookSettings.load()
    assert saved.access_key == "a1b2c3d4"
    assert saved.return_password_field == "site_password"
    # The key it replaced keeps working for the grace period, as after "Regenerate".
    assert [previous.key for previous in access_keys.previous_keys(saved)] == [generated]
    entry = ActivityLog.objects.get(source="admin")
    assert "replaced" in entry.message and "a1b2c3d4" not in entry.message and generated not in entry.message
    form["new_access_key"] = "short"
    response = admin_client.post(reverse("admin:settings_app_webhooksettings_change"), form)
    assert response.status_code == 200
    assert WebhookSettings.load().access_key == "a1b2c3d4"


def test_a_settings_form_opened_before_a_rotation_does_not_undo_it(admin_client):
    url = reverse("admin:settings_app_webhooksettings_change")
    page = admin_client.get(url).content.decode()
    assert 'name="access_key"' in page and "disabled" in page  # shown, not editable: only a rotation changes it
    old = WebhookSettings.load().access_key
    new, _ = access_keys.rotate(WebhookSettings.load())  # someone regenerates meanwhile
    # The stale form is saved (what its browser would send, the old key included as a stray field).
    form = {
        "access_key": old,
        "username_format": "email",
        "login_link_lifetime_hours": "72",
        "return_password": "on",
        "return_password_field": "x",
    }
    assert admin_client.post(url, form).status_code == 302
    saved = WebhookSettings.load()
    assert saved.access_key == new
    assert [previous.key for previous in access_keys.previous_keys(saved)] == [old]
    assert saved.return_password_field == "x"


def test_regenerate_from_the_admin(admin_client):
    old = WebhookSettings.load().access_key
    url = reverse("admin:settings_app_webhooksettings_regenerate")
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url)
    assert response.status_code == 302
    new = WebhookSettings.load().access_key
    assert new != old
    entry = ActivityLog.objects.get(source="admin")
    assert "regenerated" in entry.message and new not in entry.message and old not in entry.message


def test_field_mapping_admin_lists_mappings(admin_client):
    page = admin_client.get(reverse("admin:settings_app_fieldmapping_changelist")).content.decode()
    assert "user_pass" in page


@pytest.mark.django_db(transaction=True)
def test_the_key_is_the_same_in_another_process(subprocess_env):
    key = WebhookSettings.load().access_key
    result = subprocess.run(
        [sys.executable, "manage.py", "webhook_urls", "--base-url", "https://mydomain.com"],
        cwd=settings.BASE_DIR,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"access_key={key}" in result.stdout


def test_the_field_mapping_help_shows_meta_key(admin_client):
    """The help text is HTML in the admin: "meta.<key>" must reach the browser escaped, or the browser eats "<key>"."""
    page = admin_client.get(reverse("admin:settings_app_fieldmapping_add")).content.decode()
    assert "role, meta.&lt;key&gt;" in page
    assert "meta.<key>" not in page


@pytest.mark.parametrize("field_name", ["email", "cio_id", "created_at", "first_name", "site_password"])
def test_the_login_link_field_cannot_overwrite_an_attribute_in_use(field_name):
    from django.core.exceptions import ValidationError

    site_settings = WebhookSettings.load()
    site_settings.return_password_field = "site_password"
    site_settings.return_login_link_field = field_name
    with pytest.raises(ValidationError, match="already used"):
        site_settings.full_clean()
    site_settings.return_login_link_field = "login_link"
    site_settings.full_clean()


def test_the_settings_page_warns_when_a_login_link_cannot_be_returned(admin_client, settings):
    settings.SITE_BASE_URL = ""
    WebhookSettings.load()
    WebhookSettings.objects.update(return_login_link=True, return_login_link_field="login_link")
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert "SITE_BASE_URL is not set" in page
