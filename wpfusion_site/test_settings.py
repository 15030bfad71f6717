"""Settings for the test suite: the production settings plus what only tests may have."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")

from .settings import *  # noqa: E402,F403
from .settings import BASE_DIR, CACHES, DATABASES, INSTALLED_APPS  # noqa: E402

# Tests start the Customer.io emulator (and its management command) whatever DEBUG says.
if "cio_emulator" not in INSTALLED_APPS:
    INSTALLED_APPS = [*INSTALLED_APPS, "cio_emulator"]

# Fast hashing keeps the suite quick; production uses Argon2 first (tests/project/test_passwords.py checks it).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# The test client speaks plain HTTP, and the admin's pages are rendered without collectstatic.
SECURE_SSL_REDIRECT = SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True

# The demo members area is tested like the rest (production settings never install it).
if "demo" not in INSTALLED_APPS:
    INSTALLED_APPS = [*INSTALLED_APPS, "demo"]

# Two test runs on one machine at once (a developer and a helper, say) set TEST_DB_SUFFIX to keep apart.
_suffix = os.environ.get("TEST_DB_SUFFIX", "")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that processes a test starts (servers, workers) can open the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db{_suffix}.sqlite3")}
elif _suffix:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}{_suffix}"}

# The emulator's default credentials; tests point the API URLs at the emulator they start.
CUSTOMERIO_APP_API_KEY = "emulator-app-key"
CUSTOMERIO_SITE_ID = "emulator-site"
CUSTOMERIO_TRACK_API_KEY = "emulator-track-key"
CUSTOMERIO_RETRY_BACKOFF = 0.05
# Production keeps the pool at least as large as gunicorn's threads; the tests' live server starts a thread per
# request (20 at once in the concurrency tests, each holding a connection while it waits for a person's lock).
if "pool" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["OPTIONS"]["pool"] = {**DATABASES["default"]["OPTIONS"]["pool"], "max_size": 32}
CACHES["default"]["KEY_PREFIX"] = f"test{_suffix}"  # tests of several checkouts may share one Redis
