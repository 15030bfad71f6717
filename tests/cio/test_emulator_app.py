"""The emulator is a development tool: production settings without ENABLE_CIO_EMULATOR do not install it."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

# The suite's conftest seeds rows for every test, so each file needs the test database.
pytestmark = pytest.mark.django_db


def manage(*args, **overrides):
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "ENABLE_CIO_EMULATOR"}}
    env.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull, "SECRET_KEY": "x"})
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_do_not_install_the_emulator():
    result = manage("cio_emulator", "--help", DEBUG="false")

    assert result.returncode != 0
    assert "Unknown command: 'cio_emulator'" in result.stderr


@pytest.mark.parametrize("overrides", [{"DEBUG": "false", "ENABLE_CIO_EMULATOR": "true"}, {"DEBUG": "true"}])
def test_the_switch_or_debug_installs_it(overrides):
    result = manage("cio_emulator", "--help", **overrides)

    assert result.returncode == 0, result.stderr
    assert "Serve the Customer.io emulator" in result.stdout


def test_the_test_settings_install_it():
    assert "cio_emulator" in settings.INSTALLED_APPS
