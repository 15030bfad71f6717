import pytest
from playwright.sync_api import expect

from users.models import User
from webhooks import cio_calls
from webhooks.models import CustomerIOCallHour, WebhookDelivery
from webhooks.overview.figures import read_figures

pytestmark = pytest.mark.browser


def test_the_overview_shows_the_databases_numbers(admin_page, send_webhook, screenshot):
    # Real traffic: two processed webhooks (Customer.io called through the emulator), one refused for its key, one
    # for nobody on the site; then a queued one waiting for a worker and a user owed a password return.
    assert send_webhook("add", "ann@example.com").status_code == 200
    assert send_webhook("update_tags", "nobody@example.com").status_code == 200
    assert send_webhook("update", "ann@example.com", key="wrong-key-000000").status_code == 403
    WebhookDelivery.objects.create(
        action="update", contact="bob@example.com", contact_key="email:bob@example.com", status="retrying"
    )
    User.objects.filter(email="ann@example.com").update(password_return_due=True)
    from webhooks.intake import refusals

    refusals.flush()  # the live server's thread counted the refusal in this process
    cio_calls.flush()
    calls = sum(CustomerIOCallHour.objects.values_list("count", flat=True))
    assert calls > 0

    admin_page.goto("/admin/")
    admin_page.get_by_role("table", name="Webhooks").get_by_role("link", name="Overview").click()
    expect(admin_page.get_by_role("heading", name="Overview")).to_be_visible()

    figures = read_figures()
    expect(admin_page.locator("#queue-waiting")).to_have_text(str(figures.backlog.waiting))
    assert figures.backlog.waiting == 1
    expect(admin_page.locator("#password-returns-owed")).to_have_text("1")
    expect(admin_page.locator("#segment-changes-waiting")).to_have_text(str(figures.segment_changes.count))
    day = admin_page.locator("#chart-deliveries-24h")
    counted = {status: WebhookDelivery.objects.filter(status=status).count() for status in ("succeeded", "skipped")}
    assert counted == {"succeeded": 1, "skipped": 1}  # the add, and the update_tags for nobody
    for outcome, count in [*counted.items(), ("failed", 0), ("waiting", 1)]:
        expect(day.locator(f'[data-series="{outcome}"]')).to_have_text(f"{outcome} {count}")
    expect(admin_page.locator('#chart-calls-24h [data-series="calls"]')).to_have_text(f"calls {calls}")
    expect(admin_page.locator('#chart-refused-7d [data-series="refused"]')).to_have_text("refused 1")
    # Each chart is an image with a name, and its numbers are in a table under it.
    expect(admin_page.get_by_role("img", name="Deliveries by outcome, last 24 hours")).to_be_visible()
    day.get_by_text("Numbers", exact=True).click()
    expect(day.get_by_role("table").locator("tbody tr")).to_have_count(24)
    screenshot(admin_page, "admin-overview")

    page_width, window_width = admin_page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert page_width <= window_width

    # A failing contact links to their deliveries.
    expect(admin_page.locator("#failing-contacts-total")).to_have_text("1")
    admin_page.get_by_role("table", name="Failing contacts").get_by_role("link", name="bob@example.com").click()
    expect(admin_page.get_by_role("heading", name="Select webhook delivery to view")).to_be_visible()
    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Retrying")
