import pytest
from playwright.sync_api import expect

from settings_app.models import FieldMapping

pytestmark = pytest.mark.browser


def test_a_mapping_is_turned_on_from_the_list(admin_page, screenshot):
    admin_page.goto("/admin/")
    app = admin_page.get_by_role("table", name="Customer.io webhook settings")
    app.get_by_role("link", name="Field mappings").click()
    rows = admin_page.locator("#result_list tbody tr")

    def active(cio_attribute):  # the list's editable column: its checkboxes have no label of their own
        return rows.filter(has_text=cio_attribute).locator("input[name$='-active']")

    # The defaults, as in WP Fusion: name and email on, login and password off until the admin chooses; and the
    # site's own dates pushed to Customer.io, each row saying its direction.
    expect(rows).to_have_count(7)
    expect(active("first_name")).to_be_checked()
    expect(rows.filter(has_text="first_name")).to_contain_text("Pull: Customer.io → site")
    expect(rows.filter(has_text="date_joined")).to_contain_text("Push: site → Customer.io")
    expect(active("user_login")).not_to_be_checked()
    screenshot(admin_page, "admin-field-mappings")

    active("user_login").check()
    admin_page.get_by_role("button", name="Save", exact=True).click()

    expect(admin_page.get_by_text("1 field mapping was changed successfully")).to_be_visible()
    assert FieldMapping.objects.get(cio_attribute="user_login").active
