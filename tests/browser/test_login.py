import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_staff_user_logs_in_through_the_admin_login_form(page, admin_user, screenshot):
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("password")
    page.set_viewport_size({"width": 700, "height": 420})
    screenshot(page, "login", full_page=False)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_a_wrong_password_is_refused_on_the_page(page, admin_user):
    page.goto("/admin/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_text("Please enter the correct username and password")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/admin/login/"))
