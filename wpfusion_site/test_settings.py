"""Settings for the test suite: the production settings plus what only tests may have."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")

from .settings import *  # noqa: E402,F403
from .settings import BASE_DIR, DATABASES  # noqa: E402

# Fast hashing keeps the suite quick; production keeps Django's default (PBKDF2).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that processes a test starts (servers, workers) can open the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}

# The emulator's default credentials; tests point the API URLs at the emulator they start.
CUSTOMERIO_APP_API_KEY = "emulator-app-key"
CUSTOMERIO_SITE_ID = "emulator-site"
CUSTOMERIO_TRACK_API_KEY = "emulator-track-key"
CUSTOMERIO_RETRY_BACKOFF = 0.05
