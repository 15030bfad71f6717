import pytest
from playwright.sync_api import expect

from users.models import AccessRule, Tag

from .screenshots import down_to

pytestmark = pytest.mark.browser


def test_a_rule_made_in_the_admin_lists_the_tags_it_needs(admin_page, screenshot):
    vip = Tag.objects.create(segment_id=1, name="VIP", kind=Tag.Kind.MANUAL)
    Tag.objects.create(segment_id=2, name="Newsletter", kind=Tag.Kind.MANUAL)
    Tag.objects.create(segment_id=3, name="Payment failed", kind=Tag.Kind.DATA_DRIVEN)

    admin_page.goto("/admin/")
    admin_page.get_by_role("table", name="Users").get_by_role("link", name="Access rules").click()
    admin_page.get_by_role("link", name="Add access rule").click()
    admin_page.get_by_role("textbox", name="Path").fill("/members/")
    admin_page.get_by_role("checkbox", name="Prefix").check()
    # Django's two-box tag pickers: select in "Available", then move it across with the arrow.
    admin_page.locator("#id_tags_any_from").select_option(label="VIP")
    admin_page.locator("#id_tags_any_add").click()
    admin_page.locator("#id_tags_none_from").select_option(label="Payment failed")
    admin_page.locator("#id_tags_none_add").click()
    admin_page.get_by_role("textbox", name="Redirect url").fill("/join/")
    expect(admin_page.locator("#id_tags_any_to option")).to_have_text(["VIP"])
    # Without the sidebar, down to the first tag picker: the others below are the same picker again.
    admin_page.get_by_role("button", name="Toggle navigation").click()
    screenshot(admin_page, "admin-access-rule", full_page=True, clip=down_to(admin_page.locator(".field-tags_any")))
    admin_page.get_by_role("button", name="Save", exact=True).click()

    row = admin_page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("any of VIP; none of Payment failed")
    expect(row).to_contain_text("redirect to /join/")
    screenshot(admin_page, "admin-access-rules")
    rule = AccessRule.objects.get()
    assert (rule.path, rule.prefix, list(rule.tags_any.all())) == ("/members/", True, [vip])
