"""Fixtures for the admin's browser tests: Debian's Chromium driven by Playwright against pytest-django's
live_server. `make screenshots` runs them with SAVE_SCREENSHOTS=docs/images to redraw the documentation's pictures
(tests/browser/screenshots.py lists them)."""

import pytest
from django.conf import settings

from . import chromium, screenshots

SKIPPED_BROWSER_TESTS = pytest.StashKey[int]()

VIEWPORT = {"width": 1400, "height": 900}


def pytest_collection_modifyitems(config, items):
    """Without a browser (and unless CI requires one) the browser tests are deselected, and the summary says why in
    one line rather than one skip line per test."""
    if chromium.missing_reason() is None or chromium.required():
        return
    browser_tests = [item for item in items if item.get_closest_marker("browser")]
    if browser_tests:
        config.hook.pytest_deselected(items=browser_tests)
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
        config.stash[SKIPPED_BROWSER_TESTS] = len(browser_tests)


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.config.stash.get(SKIPPED_BROWSER_TESTS, 0)
    if skipped:
        terminalreporter.write_line(
            f"browser tests: SKIPPED {skipped} (deselected): {chromium.missing_reason()}", yellow=True, bold=True
        )


@pytest.fixture(scope="package")
def browser():
    reason = chromium.missing_reason()
    if reason:  # only when required: otherwise the tests were deselected
        pytest.fail(f"browser tests required ({chromium.REQUIRE_ENV} is set) but cannot run: {reason}")
    from playwright.sync_api import expect, sync_playwright

    # The machine may be busy (CI, several test runs): give pages and assertions the same generous wait.
    expect.set_options(timeout=15_000)

    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps an asyncio event loop running in the test thread, and Django refuses ORM
        # calls from a thread with a running loop. The tests are plain synchronous code, so allow them -- for this
        # package only: the browser (and its loop) is closed before the rest of the suite runs.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=chromium.executable(), args=chromium.LAUNCH_ARGS)
            yield launched
            launched.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab (its own cookies) on the live server."""
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def admin_page(page, admin_user, client, live_server):
    """The tab, logged in as a staff superuser (the login form itself is tested in test_login.py)."""
    client.force_login(admin_user)
    session_cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie, "url": live_server.url}])
    return page


@pytest.fixture
def screenshot():
    """screenshot(page_or_element, name, **options): with SAVE_SCREENSHOTS=DIR set, saves DIR/NAME.png through
    Playwright's screenshot() (a Page or a Locator, with its options: full_page, clip); else nothing. The name must
    be in screenshots.SCREENSHOTS, checked on every run so that `make test` catches a picture the docs do not know."""
    directory = screenshots.directory()

    def save(target, name: str, **options) -> None:
        assert name in screenshots.SCREENSHOTS, f"{name!r} is not in tests/browser/screenshots.py's SCREENSHOTS"
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        target.screenshot(path=str(path), **options)
        size = path.stat().st_size
        assert size <= screenshots.MAX_BYTES, f"{path} is {size:,} bytes: clip it to what the page needs"

    return save


PEOPLE = {
    "segments": [{"id": 1, "name": "VIP", "type": "manual"}, {"id": 2, "name": "Newsletter", "type": "manual"}],
    "customers": [
        {
            "email": "ann@example.com",
            "id": "ann",
            "attributes": {"first_name": "Ann", "last_name": "Smith"},
            "segments": [1, 2],
        },
        {"email": "bob@example.com", "id": "bob", "attributes": {"first_name": "Bob"}, "segments": [2]},
    ],
}


@pytest.fixture
def send_webhook(cio_emulator, live_server):
    """send_webhook(action, email, key=None): calls the live site's webhook the way Customer.io does, with the
    emulator holding Ann and Bob. Returns the HTTP response."""
    import requests

    from settings_app.models import WebhookSettings

    cio_emulator.reset(PEOPLE)

    def send(action: str, email: str, *, key: str | None = None):
        access_key = WebhookSettings.load().access_key if key is None else key
        return requests.post(
            f"{live_server.url}/",
            params={"wpf_action": action, "access_key": access_key},
            json={"email": email},
            timeout=30,
        )

    return send
