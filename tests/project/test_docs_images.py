"""The documentation's pictures and the browser tests that take them stay in step (tests/browser/screenshots.py)."""

import re
from pathlib import Path

from tests.browser.screenshots import MAX_BYTES, SCREENSHOTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
# Every Markdown image's target; the pages show screenshots only, as ![alt](images/NAME.png).
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*([^)\s]+)")
SCREENSHOT_FILE = re.compile(r"images/([^/]+)\.png")
# screenshot(page, "NAME", ...) in a browser test.
TAKEN = re.compile(r"\bscreenshot\(\s*[^,]+,\s*\"([^\"]+)\"")


def shown_images(docs: Path = DOCS) -> dict[str, list[str]]:
    """Each image name the pages show, with the pages that show it."""
    shown: dict[str, list[str]] = {}
    for page in sorted(docs.glob("**/*.md")):
        for target in IMAGE.findall(page.read_text(encoding="utf-8")):
            # Anything but images/NAME.png (another folder, a JPEG, a URL) keeps its target and fails below.
            screenshot_file = SCREENSHOT_FILE.fullmatch(target)
            name = screenshot_file.group(1) if screenshot_file else target
            shown.setdefault(name, []).append(page.relative_to(docs).as_posix())
    return shown


def taken_screenshots() -> set[str]:
    tests = (ROOT / "tests" / "browser").glob("test_*.py")
    return {name for test in tests for name in TAKEN.findall(test.read_text(encoding="utf-8"))}


def test_every_image_a_page_shows_is_a_screenshot_the_browser_tests_take():
    shown = shown_images()
    unknown = {name: pages for name, pages in shown.items() if name not in SCREENSHOTS}
    assert not unknown, f"images no browser test takes (add them to tests/browser/screenshots.py): {unknown}"
    unused = sorted(set(SCREENSHOTS) - set(shown))
    assert not unused, f"screenshots no docs page shows: {unused}"


def test_every_listed_screenshot_is_taken_by_a_browser_test():
    untaken = sorted(set(SCREENSHOTS) - taken_screenshots())
    assert not untaken, f"listed in tests/browser/screenshots.py but no test calls screenshot(..., NAME): {untaken}"


def test_docs_images_holds_exactly_the_screenshots_and_each_is_small():
    files = {path.stem: path for path in IMAGES.glob("*") if path.is_file()}
    assert sorted(set(files) - set(SCREENSHOTS)) == [], "files in docs/images no page shows: delete them"
    assert sorted(set(SCREENSHOTS) - set(files)) == [], "screenshots missing from docs/images: run make screenshots"
    large = {name: path.stat().st_size for name, path in files.items() if path.stat().st_size > MAX_BYTES}
    assert not large, f"images over {MAX_BYTES:,} bytes: {large}"
