import pytest
from django.utils import timezone
from playwright.sync_api import expect

from users.models import ImportRun

pytestmark = pytest.mark.browser


def test_the_import_runs_show_where_each_stands(admin_page, screenshot):
    # Written by `cio_import_users` only: the admin reads them.
    ImportRun.objects.create(
        segment_id=7,
        status=ImportRun.Status.FINISHED,
        members_done=1200,
        created=1150,
        updated=48,
        failed=2,
        finished_at=timezone.now(),
    )
    ImportRun.objects.create(segment_id=12, status=ImportRun.Status.PAUSED, members_done=500, created=500)

    admin_page.goto("/admin/")
    admin_page.get_by_role("table", name="Users").get_by_role("link", name="Import runs").click()

    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Finished")).to_contain_text("1150")
    expect(rows.filter(has_text="Paused (--limit reached)")).to_contain_text("500")
    expect(admin_page.get_by_role("link", name="Add import run")).to_have_count(0)
    # The list is wider than the page beside the sidebar: fold it away for the picture.
    admin_page.get_by_role("button", name="Toggle navigation").click()
    expect(rows.first.locator("td.field-finished_at")).to_be_in_viewport()
    screenshot(admin_page, "admin-import-runs", full_page=True)  # from the top, wherever the click scrolled
