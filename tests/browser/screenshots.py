"""The documentation's screenshots: every image a docs/ page shows is one of these, taken by a browser test.

`make screenshots` runs the browser tests with SAVE_SCREENSHOTS=docs/images, and each test that shows one of these
pages saves it as docs/images/NAME.png; a plain test run saves nothing. The one list keeps the pictures and the
pages in step: the `screenshot` fixture refuses a name not listed here, and tests/project/test_docs_images.py fails
on a listed name no test takes or no page shows, and on a page's image not listed here.
"""

import os
from pathlib import Path

DIRECTORY_ENV = "SAVE_SCREENSHOTS"

# Larger files would weigh on the repository at every redraw; a viewport or a clipped region keeps them small.
MAX_BYTES = 250_000

SCREENSHOTS = {
    "admin-login": "the admin's login form",
    "admin-webhook-settings": "Webhook settings: the header, the URLs to copy, the access keys, the options",
    "admin-key-rotation": "Webhook settings after Regenerate: the previous key's grace and the keys deliveries used",
    "admin-field-mappings": "Field mappings: Customer.io attributes onto user fields",
    "admin-activity-log-filtered": "the activity log filtered to errors",
    "admin-webhook-deliveries": "the webhook deliveries list",
    "admin-webhook-delivery": "one delivery with its activity lines",
    "admin-refused-requests": "requests refused for their key, per address and hour",
    "admin-access-rules": "the access rules list",
    "admin-access-rule": "an access rule's page",
    "admin-user": "a user's page: role and tags",
    "admin-user-messages": "a user's page: their message timeline from Customer.io's reporting webhook",
    "admin-import-runs": "the runs of cio_import_users",
    "admin-overview": "Webhooks → Overview: the queue, the workers and the last 24 hours and 7 days as charts",
    "account-page": "a logged-in person's account page with their tags",
    "webhook-connected": "the page a browser shows for the test webhook URL",
}


def directory() -> Path | None:
    """Where to save the screenshots, or None (a plain test run)."""
    value = os.environ.get(DIRECTORY_ENV)
    return Path(value) if value else None


def down_to(element) -> dict:
    """A clip (with full_page=True) from the top of the page to just below the element: a long form's first part."""
    # In page coordinates: bounding_box() is relative to the window, which filling a form may have scrolled.
    bottom = element.evaluate("element => element.getBoundingClientRect().bottom + window.scrollY")
    return {"x": 0, "y": 0, "width": element.page.viewport_size["width"], "height": bottom + 16}
