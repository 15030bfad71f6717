import re

import pytest
from playwright.sync_api import expect

from webhooks.intake import refusals as refused

pytestmark = pytest.mark.browser


def test_filtering_the_activity_log_by_level_shows_only_those_lines(admin_page, send_webhook, cio_emulator, screenshot):
    assert send_webhook("add", "ann@example.com").status_code == 200
    assert send_webhook("update_tags", "bob@example.com").status_code == 200  # Bob never joined: a notice
    cio_emulator.set_faults(fail_rate=1.0, fail_status=500)
    assert send_webhook("update_tags", "ann@example.com").status_code == 502  # Customer.io down: an error
    cio_emulator.set_faults()
    assert send_webhook("test", "ann@example.com", key="a-wrong-key-of-some-length").status_code == 403
    refused.flush()  # the live server runs in this process: its minute's tally of refused requests, written now

    admin_page.goto("/admin/")
    admin_page.get_by_role("table", name="Users").get_by_role("link", name="Activity logs").click()
    lines = admin_page.locator("#result_list tbody tr")
    ann_tags = lines.filter(has_text="Loaded tags for ann@example.com")
    bob_notice = lines.filter(has_text="No matching user found for bob@example.com")
    failed = lines.filter(has_text="Webhook update_tags for ann@example.com failed: 502")
    wrong_key = lines.filter(has_text="Refused 1 webhook request with a wrong access key from 127.0.0.1")
    for line in (ann_tags, bob_notice, failed, wrong_key):
        expect(line).to_have_count(1)
    all_lines = lines.count()

    filters = admin_page.get_by_role("navigation", name="Filter")
    filters.get_by_role("link", name="Error", exact=True).click()

    expect(admin_page).to_have_url(re.compile(r"level__exact=error"))
    expect(failed).to_have_count(1)
    expect(wrong_key).to_have_count(0)
    expect(ann_tags).to_have_count(0)
    expect(bob_notice).to_have_count(0)
    assert lines.count() < all_lines
    level_error = admin_page.get_by_role("cell", name="Error", exact=True)
    expect(lines.filter(has_not=level_error)).to_have_count(0)
    screenshot(admin_page, "admin-activity-log-filtered", full_page=True)

    filters.get_by_role("link", name="Warning", exact=True).click()
    expect(wrong_key).to_have_count(1)
    expect(failed).to_have_count(0)

    filters.get_by_role("link", name="Notice", exact=True).click()
    expect(bob_notice).to_have_count(1)
    expect(wrong_key).to_have_count(0)
    expect(ann_tags).to_have_count(0)

    filters.get_by_role("link", name="All", exact=True).first.click()
    expect(lines).to_have_count(all_lines)
