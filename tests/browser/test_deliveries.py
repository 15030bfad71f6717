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


def test_replaying_a_delivery_queues_it_again(admin_page, send_webhook):
    assert send_webhook("add", "ann@example.com").status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED

    open_deliveries(admin_page)
    row = admin_page.get_by_role("row").filter(has_text="ann@example.com")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Succeeded")
    row.get_by_role("checkbox").check()
    admin_page.get_by_role("combobox", name=re.compile(r"^Action:")).select_option(label=REPLAY)
    admin_page.get_by_role("button", name="Go").click()

    expect(admin_page.get_by_text("Queued 1 deliveries for processing.")).to_be_visible()
    expect(row).to_contain_text("Queued")
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.QUEUED
