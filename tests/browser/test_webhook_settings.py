import pytest
import requests
from playwright.sync_api import expect

from settings_app.models import WebhookSettings

pytestmark = pytest.mark.browser

ACTIONS = ("update_tags", "update", "add", "test")  # the four URLs of docs/connect.md
NO_FIELD_WARNING = "Return Password is on but no Customer.io field is chosen"


def open_webhook_settings(page):
    """From the admin's index, the way docs/connect.md sends a site owner there."""
    page.goto("/admin/")
    app = page.get_by_role("table", name="Customer.io webhook settings")
    app.get_by_role("link", name="Webhook settings", exact=True).click()
    expect(page.get_by_role("heading", name="Webhook URLs for Customer.io")).to_be_visible()


def shown_urls(page) -> dict[str, str]:
    return {action: page.get_by_label(f"{action} webhook URL").input_value() for action in ACTIONS}


def test_the_settings_page_shows_four_working_urls_with_the_current_key(admin_page, live_server):
    open_webhook_settings(admin_page)
    key = admin_page.get_by_label("Access key").input_value()
    assert key == WebhookSettings.load().access_key

    urls = shown_urls(admin_page)
    for action, url in urls.items():
        assert url.startswith(live_server.url + "/?")
        assert f"wpf_action={action}" in url
        assert f"access_key={key}" in url

    # Copied as shown and pasted into Customer.io: the URL works.
    answer = requests.post(urls["test"], json={"email": "ann@example.com"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def test_the_header_and_the_urls_are_built_on_the_configured_site_base_url(admin_page, settings, screenshot):
    settings.SITE_BASE_URL = "https://mydomain.com"
    open_webhook_settings(admin_page)
    key = admin_page.get_by_label("Access key").input_value()
    # Recommended: the key in a header, the URLs without it.
    expect(admin_page.get_by_label("Authorization header")).to_have_value(f"Authorization: Bearer {key}")
    for action in ACTIONS:
        expect(admin_page.get_by_label(f"{action} URL, key in a header")).to_have_value(
            f"https://mydomain.com/?wpf_action={action}"
        )
    for action, url in shown_urls(admin_page).items():
        assert url == f"https://mydomain.com/?wpf_action={action}&access_key={key}"
    # The top of the page, down to the first options (the rest is checkboxes the Settings reference lists).
    screenshot(
        admin_page, "admin-webhook-settings", full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": 1500}
    )


def test_regenerating_the_key_shows_a_new_key_and_new_urls(admin_page, screenshot):
    open_webhook_settings(admin_page)
    old_key = admin_page.get_by_label("Access key").input_value()
    old_urls = shown_urls(admin_page)
    questions = []

    def accept(dialog):
        questions.append(dialog.message)
        dialog.accept()

    admin_page.on("dialog", accept)
    admin_page.get_by_role("button", name="Regenerate access key").click()

    expect(admin_page.get_by_text("A new access key was generated")).to_be_visible()
    assert "keeps working until" in admin_page.get_by_text("A new access key was generated").inner_text()
    assert questions and "Generate a new access key?" in questions[0]
    new_key = admin_page.get_by_label("Access key").input_value()
    assert new_key != old_key
    assert new_key == WebhookSettings.load().access_key
    new_urls = shown_urls(admin_page)
    for action in ACTIONS:
        assert new_urls[action] != old_urls[action]
        assert f"access_key={new_key}" in new_urls[action]
        assert old_key not in new_urls[action]

    # Both work during the grace period, which the page shows with its end.
    assert requests.post(old_urls["test"], json={}, timeout=10).status_code == 200
    assert requests.post(new_urls["test"], json={}, timeout=10).status_code == 200
    expect(admin_page.get_by_text("still works until")).to_be_visible()
    # Which key each delivery used, to see when Customer.io stops sending the old one.
    admin_page.reload()
    key_use = admin_page.locator("#recent-key-use tbody tr")
    expect(key_use).to_have_count(2)
    expect(key_use.nth(0)).to_contain_text("current key")  # newest first
    expect(key_use.nth(1)).to_contain_text("previous key (valid until")
    screenshot(admin_page.locator("#access-keys"), "admin-key-rotation")

    # Ended now: the old URL is refused, the new one works.
    admin_page.get_by_role("button", name="End the grace period now").click()
    expect(admin_page.get_by_text("Previous access keys no longer work")).to_be_visible()
    expect(admin_page.get_by_text("No previous key is valid.")).to_be_visible()
    assert requests.post(old_urls["test"], json={}, timeout=10).status_code == 403
    assert requests.post(new_urls["test"], json={}, timeout=10).status_code == 200


def test_cancelling_the_confirmation_keeps_the_key(admin_page):
    open_webhook_settings(admin_page)
    old_key = admin_page.get_by_label("Access key").input_value()
    admin_page.on("dialog", lambda dialog: dialog.dismiss())
    admin_page.get_by_role("button", name="Regenerate access key").click()

    expect(admin_page.get_by_label("Access key")).to_have_value(old_key)
    assert WebhookSettings.load().access_key == old_key


def save_settings(page):
    """Save, which returns to the admin's index with a message; then come back to the settings page."""
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Webhook settings was changed successfully")).to_be_visible()
    open_webhook_settings(page)


def test_return_password_and_its_field_are_saved_and_the_warning_follows_them(admin_page):
    WebhookSettings.load()
    WebhookSettings.objects.update(return_password=True, return_password_field="")
    open_webhook_settings(admin_page)
    warning = admin_page.get_by_text(NO_FIELD_WARNING)
    return_password = admin_page.get_by_role("checkbox", name="Return password")
    field = admin_page.get_by_role("textbox", name="Return password field")
    expect(warning).to_be_visible()
    expect(return_password).to_be_checked()

    field.fill("wp_password")
    save_settings(admin_page)
    expect(warning).to_have_count(0)
    expect(field).to_have_value("wp_password")
    saved = WebhookSettings.load()
    assert (saved.return_password, saved.return_password_field) == (True, "wp_password")

    # The field cleared: the warning is back.
    field.fill("")
    save_settings(admin_page)
    expect(warning).to_be_visible()
    assert WebhookSettings.load().return_password_field == ""

    # Return Password off: nothing to warn about.
    return_password.uncheck()
    save_settings(admin_page)
    expect(return_password).not_to_be_checked()
    expect(warning).to_have_count(0)
    assert WebhookSettings.load().return_password is False
