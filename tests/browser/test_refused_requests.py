import pytest
import requests
from playwright.sync_api import expect

from webhooks.intake import refusals as refused

pytestmark = pytest.mark.browser


def test_requests_refused_for_their_key_are_counted_per_address(admin_page, send_webhook, live_server, screenshot):
    for action in ("update_tags", "add", "update_tags"):
        assert send_webhook(action, "ann@example.com", key="an-old-key-from-a-forgotten-journey").status_code == 403
    assert requests.post(f"{live_server.url}/?wpf_action=test", json={}, timeout=10).status_code == 403
    refused.flush()  # the live server runs in this process: its minute's tally, written now

    admin_page.goto("/admin/")
    admin_page.get_by_role("table", name="Webhooks").get_by_role("link", name="Refused requests").click()

    row = admin_page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)  # one row per address and hour, however many requests
    for shown in ("127.0.0.1", "wrong key (3), missing key (1)", "update_tags, add"):
        expect(row).to_contain_text(shown)
    expect(row.locator("td.field-count")).to_have_text("4")
    expect(row.locator("td.field-answered_429")).to_have_text("0")  # all 403s: the throttle allows 20 a minute
    expect(admin_page.locator("#result_list thead")).to_contain_text("ANSWERED 429", ignore_case=True)
    screenshot(admin_page, "admin-refused-requests")
