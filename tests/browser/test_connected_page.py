import pytest
from playwright.sync_api import expect

from settings_app.models import WebhookSettings

pytestmark = pytest.mark.browser


def test_opening_the_test_url_in_a_browser_shows_connected_without_the_key(page, live_server, settings, screenshot):
    settings.SITE_BASE_URL = "https://mydomain.com"
    key = WebhookSettings.load().access_key

    page.set_viewport_size({"width": 900, "height": 640})
    answer = page.goto(f"/?wpf_action=test&access_key={key}")

    assert answer.status == 200
    expect(page.get_by_role("heading", name="Connected")).to_be_visible()
    expect(page.get_by_text("https://mydomain.com")).to_be_visible()
    expect(page.get_by_text("the current key")).to_be_visible()
    assert key not in page.content()
    screenshot(page, "webhook-connected")

    refused = page.goto("/?wpf_action=test&access_key=a-wrong-key-of-some-length")
    assert refused.status == 403
    expect(page.get_by_role("heading", name="Not connected")).to_be_visible()
