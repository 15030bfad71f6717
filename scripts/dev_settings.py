"""The development settings `make run` and `make manage` share: DEBUG on, and the Customer.io emulator's address and
credentials unless real Customer.io credentials are configured.

They live only in the environment of the processes these scripts start; nothing is written to `.env`, so a
production deploy from the same checkout never picks them up.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
# PORT and EMULATOR_PORT move the site and the emulator off 8000 and 8765 (another checkout running, a test).
PORT = os.environ.get("PORT", "8000")
EMULATOR_HOST = "127.0.0.1"
EMULATOR_PORT = os.environ.get("EMULATOR_PORT", "8765")
EMULATOR_URL = f"http://{EMULATOR_HOST}:{EMULATOR_PORT}"
EMULATOR_CREDENTIALS = {
    "CUSTOMERIO_APP_API_KEY": "emulator-app-key",
    "CUSTOMERIO_SITE_ID": "emulator-site",
    "CUSTOMERIO_TRACK_API_KEY": "emulator-track-key",
    # The reporting webhook's, so that the emulator's signed message events reach the site (docs/development.md).
    "CUSTOMERIO_REPORTING_SIGNING_KEYS": "emulator-reporting-signing-key",
}


def base_env() -> dict:
    """The caller's environment with DEBUG on (unless set), the demo members area, and the site's address as its
    base URL."""
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1"), "ENABLE_DEMO": "1"}  # the members area of the tour
    env.setdefault("DJANGO_SETTINGS_MODULE", "wpfusion_site.settings")
    env.setdefault("SITE_BASE_URL", f"http://{HOST}:{PORT}")
    return env


def real_customerio_configured(env) -> bool:
    """True when the settings name a real workspace (an App API key of its own and no URL override)."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(bool(s.CUSTOMERIO_APP_API_KEY) and s.CUSTOMERIO_APP_API_KEY != 'emulator-app-key' "
        "and not s.CUSTOMERIO_APP_API_URL)"
    )
    answer = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return answer.stdout.strip() == "True"


def emulator_env(env) -> dict:
    """`env` pointed at the emulator `make run` starts."""
    return {
        **env,
        **EMULATOR_CREDENTIALS,
        "CUSTOMERIO_APP_API_URL": EMULATOR_URL,
        "CUSTOMERIO_TRACK_API_URL": EMULATOR_URL,
    }
