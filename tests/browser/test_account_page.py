import re

import pytest
from playwright.sync_api import expect

from users.models import Tag, UserTag

pytestmark = pytest.mark.browser


def test_a_login_without_next_lands_on_the_account_page_with_the_persons_tags(page, django_user_model, screenshot):
    ann = django_user_model.objects.create_user(
        "ann@example.com", "ann@example.com", "a-pass-42", first_name="Ann", last_name="Smith"
    )
    for segment_id, name in [(1, "VIP"), (2, "Newsletter")]:
        UserTag.objects.create(user=ann, tag=Tag.objects.create(segment_id=segment_id, name=name))

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("ann@example.com")
    page.get_by_label("Password").fill("a-pass-42")
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(re.compile(r"/accounts/profile/$"))
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_text("Ann Smith")).to_be_visible()
    expect(page.locator(".account-tags li")).to_have_text(["Newsletter", "VIP"])
    page.set_viewport_size({"width": 900, "height": 560})
    screenshot(page, "account-page")
    page.get_by_role("link", name="Change your password").click()
    expect(page).to_have_url(re.compile(r"/accounts/password_change/$"))
