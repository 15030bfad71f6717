from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from users.models import User
from webhooks.models import MessageEvent

pytestmark = pytest.mark.browser


def test_a_user_s_message_timeline_newest_first_and_the_filtered_list(admin_page, screenshot):
    ann = User.objects.create_user(username="ann@example.com", email="ann@example.com", password="x")
    ann.email_undeliverable = True
    ann.email_undeliverable_reason = "Customer.io: email bounced event 01JBOUNCE (550 5.1.1 mailbox unavailable)"
    ann.save()
    start = timezone.now() - timedelta(days=3)
    story = [
        ("email", "sent", {"campaign_id": 12}),
        ("email", "delivered", {"campaign_id": 12}),
        ("email", "opened", {"campaign_id": 12}),
        ("email", "clicked", {"campaign_id": 12, "link": "https://example.com/course/lesson-1"}),
        ("push", "delivered", {"broadcast_id": 3}),
        ("email", "sent", {"newsletter_id": 7}),
        ("email", "bounced", {"newsletter_id": 7, "failure": "550 5.1.1 mailbox unavailable"}),
    ]
    for n, (channel, metric, fields) in enumerate(story):
        MessageEvent.objects.create(
            event_id=f"evt-{n}",
            metric=metric,
            channel=channel,
            occurred_at=start + timedelta(hours=5 * n),
            recipient="ann@example.com",
            email="ann@example.com",
            user=ann,
            processed_at=timezone.now(),
            **fields,
        )
    MessageEvent.objects.create(event_id="evt-bob", metric="sent", channel="email", occurred_at=start)

    admin_page.goto(f"/admin/users/user/{ann.pk}/change/")
    messages = admin_page.locator("fieldset").filter(
        has=admin_page.get_by_role("heading", name="Messages from Customer.io")
    )
    expect(messages).to_be_visible()
    rows = messages.locator("table.message-timeline tbody tr")
    expect(rows).to_have_count(len(story))
    # Newest first: the bounce on top, the first email at the bottom.
    expect(rows.first).to_contain_text("bounced")
    expect(rows.first).to_contain_text("550 5.1.1 mailbox unavailable")
    expect(rows.nth(3)).to_contain_text("https://example.com/course/lesson-1")
    expect(rows.last).to_contain_text("campaign 12")
    expect(messages).to_contain_text("All 7 events.")
    expect(admin_page.get_by_role("checkbox", name="Email undeliverable")).to_be_checked()
    screenshot(messages, "admin-user-messages")

    messages.get_by_role("link", name="See them in the message events list").click()
    expect(admin_page.get_by_role("heading", name="Select message event to view")).to_be_visible()
    result_rows = admin_page.locator("#result_list tbody tr")
    expect(result_rows).to_have_count(len(story))  # Ann's only, not Bob's
    expect(admin_page.locator("#result_list")).not_to_contain_text("evt-bob")
