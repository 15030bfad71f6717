"""Which Chromium the browser tests drive, and why they would be skipped.

The tests drive Debian's `chromium` package through Playwright's Python package; Playwright never downloads a
browser of its own here (CI reaches package registries only), so the executable is always given.
"""

import os
import shutil
import subprocess
from functools import cache

# Set by .ci/run: a missing browser fails the run instead of skipping the browser tests.
REQUIRE_ENV = "REQUIRE_BROWSER_TESTS"
INSTALL_HINT = "apt-get install chromium"

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def executable() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


@cache
def missing_reason() -> str | None:
    """None when the browser tests can run, else one line saying why not and what to install."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -r requirements-dev.txt)"
    if not executable():
        return f"no Chromium on PATH ({INSTALL_HINT}, or set CHROMIUM_PATH)"
    return None


@cache
def version() -> str:
    try:
        done = subprocess.run([executable(), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip() or "unknown"


def status_line() -> str:
    """The one line pytest prints in its header about the browser tests."""
    reason = missing_reason()
    if reason is None:
        from importlib.metadata import version as package_version

        return f"browser tests: run with Playwright {package_version('playwright')} driving {version()}"
    if required():
        return f"browser tests: REQUIRED ({REQUIRE_ENV} is set) but cannot run: {reason}"
    return f"browser tests: SKIPPED, {reason}"
