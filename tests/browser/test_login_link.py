"""A login link opened in a real browser: the page's script submits its form at once (the POST that logs in, with
the CSRF token and the Origin header Django checks), the person lands on the account page logged in, and the same
link opened again elsewhere goes to the login page with the message."""

import re

import pytest
from playwright.sync_api import expect

from users.models import User
from users.services.login_links import login_url
from users.views import LOGIN_LINK_REFUSED

pytestmark = pytest.mark.browser


def test_a_login_link_logs_the_person_in_and_works_once(page, browser, live_server, settings):
    settings.SITE_BASE_URL = live_server.url
    ann = User.objects.create(username="ann@example.com", email="ann@example.com", first_name="Ann")
    ann.set_unusable_password()  # created by a webhook: the link is how they first get in
    ann.save()
    link = login_url(ann)

    page.goto(link)

    expect(page).to_have_url(re.compile(r"/accounts/profile/$"))
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_role("cell", name="ann@example.com").first).to_be_visible()
    ann.refresh_from_db()
    assert ann.last_login is not None

    # Opened again in another browser (another context: no session): refused, with the message.
    other = browser.new_context(base_url=live_server.url)
    try:
        again = other.new_page()
        again.goto(link)
        expect(again).to_have_url(re.compile(r"/accounts/login/$"))
        expect(again.get_by_text(LOGIN_LINK_REFUSED)).to_be_visible()
    finally:
        other.close()


def test_without_javascript_the_button_logs_in(browser, live_server, settings):
    settings.SITE_BASE_URL = live_server.url
    ann = User.objects.create(username="ann", email="ann@example.com")
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto(login_url(ann))
        expect(tab.get_by_text("Logging you in")).to_be_visible()
        tab.get_by_role("button", name="Log in").click()
        expect(tab).to_have_url(re.compile(r"/accounts/profile/$"))
        expect(tab.get_by_role("heading", name="Your account")).to_be_visible()
    finally:
        context.close()
