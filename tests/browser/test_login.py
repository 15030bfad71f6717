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
    screenshot(page, "admin-login")
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


def test_a_person_without_a_password_sets_one_through_forgot_password(page, django_user_model, mailoutbox):
    person = django_user_model.objects.create(username="ann@example.com", email="ann@example.com")
    person.set_unusable_password()  # as a webhook leaves them with Return Password on and no field
    person.save()

    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_role("button", name=re.compile("reset", re.I)).click()
    expect(page.get_by_role("heading", name=re.compile("sent", re.I))).to_be_visible()

    [message] = mailoutbox
    assert message.to == ["ann@example.com"]
    page.goto(re.search(r"https?://\S+/accounts/reset/\S+/", message.body).group(0))
    page.get_by_label(re.compile(r"^New password:?$")).fill("a-Fresh-pass-42")
    page.get_by_label(re.compile(r"confirm", re.I)).fill("a-Fresh-pass-42")
    page.get_by_role("button", name=re.compile("change", re.I)).click()
    expect(page.get_by_role("heading", name=re.compile("complete", re.I))).to_be_visible()

    person.refresh_from_db()
    assert person.check_password("a-Fresh-pass-42")
