import re

import pytest
from playwright.sync_api import expect

from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.browser

REPLAY = "Replay selected deliveries (process them again in the background)"


def open_deliveries(page):
    page.goto("/admin/")
    page.get_by_role("table", name="Webhooks").get_by_role("link", name="Webhook deliveries").click()
    expect(page.get_by_role("heading", name="Select webhook delivery to view")).to_be_visible()


def delivery_row(page, contact: str):
    return page.locator("#result_list tbody tr").filter(has_text=contact)


def test_a_deliverys_page_lists_the_activity_lines_its_processing_wrote(admin_page, send_webhook, screenshot):
    assert send_webhook("add", "ann@example.com").status_code == 200
    assert send_webhook("update_tags", "bob@example.com").status_code == 200  # Bob never joined

    open_deliveries(admin_page)
    row = delivery_row(admin_page, "ann@example.com")
    expect(row).to_contain_text("Succeeded")
    expect(delivery_row(admin_page, "bob@example.com")).to_contain_text("Skipped")  # no such user here
    screenshot(admin_page, "admin-webhook-deliveries")
    row.get_by_role("link").first.click()

    expect(admin_page.get_by_role("heading", name="View webhook delivery")).to_be_visible()
    expect(admin_page.get_by_text("Activity lines", exact=False).first).to_be_visible()
    expect(admin_page.get_by_text("Created user ann@example.com")).to_be_visible()
    expect(admin_page.get_by_text("Loaded tags for ann@example.com: Newsletter, VIP")).to_be_visible()
    # Only this delivery's lines: Bob's delivery wrote its own.
    expect(admin_page.get_by_text("No matching user found for bob@example.com")).to_have_count(0)
    screenshot(admin_page, "admin-webhook-delivery", full_page=True)

    admin_page.go_back()
    delivery_row(admin_page, "bob@example.com").get_by_role("link").first.click()
    expect(admin_page.get_by_text("No matching user found for bob@example.com")).to_be_visible()
    expect(admin_page.get_by_text("Loaded tags for ann@example.com")).to_have_count(0)


def test_replaying_a_delivery_queues_it_again(admin_page, send_webhook):
    assert send_webhook("add", "ann@example.com").status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED

    open_deliveries(admin_page)
    row = delivery_row(admin_page, "ann@example.com")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Succeeded")
    row.get_by_role("checkbox").check()
    admin_page.get_by_role("combobox", name=re.compile(r"^Action:")).select_option(label=REPLAY)
    admin_page.get_by_role("button", name="Go").click()

    expect(admin_page.get_by_text("Queued 1 deliveries for processing.")).to_be_visible()
    expect(row).to_contain_text("Queued")
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.QUEUED


def test_the_delivery_list_fits_1400_px_without_scrolling_sideways(admin_page):
    long_contact = "a.very.long.local.part.for.testing.widths@subdomain.example.com"
    WebhookDelivery.objects.create(
        action="update",
        contact=long_contact,
        status=WebhookDelivery.Status.FAILED,
        http_status=502,
        error="upstream_error: Customer.io answered 502 Bad Gateway after 4 retries " * 3,
    )
    assert admin_page.viewport_size["width"] == 1400

    open_deliveries(admin_page)
    expect(delivery_row(admin_page, long_contact[:20])).to_contain_text("Failed")
    page_width, window_width = admin_page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert page_width <= window_width
    # The admin scrolls a wide list inside its own box rather than the page: compare the box with its content.
    content_width, box_width = admin_page.locator("#result_list").evaluate(
        "table => [table.parentElement.scrollWidth, table.parentElement.clientWidth]"
    )
    assert content_width <= box_width


def test_the_action_filter_offers_the_four_actions(admin_page):
    WebhookDelivery.objects.create(action="add", contact="ann@example.com", status=WebhookDelivery.Status.SUCCEEDED)
    WebhookDelivery.objects.create(action="bogus", contact="eve@example.com", status=WebhookDelivery.Status.INVALID)

    open_deliveries(admin_page)
    by_action = admin_page.get_by_role("navigation", name="Filter").get_by_role("group").filter(has_text="By action")
    expect(by_action.get_by_role("link")).to_have_text(["All", "update_tags", "update", "add", "test"])
    by_action.get_by_role("link", name="add", exact=True).click()
    expect(delivery_row(admin_page, "ann@example.com")).to_have_count(1)
    expect(delivery_row(admin_page, "eve@example.com")).to_have_count(0)
