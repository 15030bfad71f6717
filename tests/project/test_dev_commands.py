"""`make manage ARGS="..."` (scripts/manage_dev.py): a second terminal's manage.py with `make run`'s settings."""

import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from users.models import Tag

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def new_terminal_env(subprocess_env, emulator_server):
    """A fresh shell's environment: none of the site's settings, no .env, the test database."""
    env = {
        key: value
        for key, value in subprocess_env.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "SITE_BASE_URL"}
        and not key.startswith("CUSTOMERIO_")
    }
    env["EMULATOR_PORT"] = str(urlsplit(emulator_server.url).port)  # where `make run` would have started it
    return env


def run(command, env):
    return subprocess.run(
        [sys.executable, *command], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_wrapper_supplies_what_plain_manage_py_lacks_and_writes_no_settings(new_terminal_env):
    env_file = settings.BASE_DIR / ".env"
    env_file_before = env_file.read_bytes() if env_file.exists() else None

    wrapped = run(["scripts/manage_dev.py", "webhook_urls"], new_terminal_env)
    plain = run(["manage.py", "webhook_urls"], new_terminal_env)

    assert wrapped.returncode == 0, wrapped.stderr
    assert "test http://127.0.0.1:8000/?wpf_action=test&access_key=" in wrapped.stdout
    # The development settings stayed in the wrapper's process: nothing on disk for a production deploy to read.
    assert plain.returncode != 0
    assert "SECRET_KEY is not set" in plain.stderr
    assert (env_file.read_bytes() if env_file.exists() else None) == env_file_before


def test_a_backfill_reaches_the_emulator_with_no_settings(new_terminal_env, cio_emulator):
    cio_emulator.reset({"segments": [{"id": 7, "name": "VIP", "type": "manual"}]})

    result = run(["scripts/manage_dev.py", "cio_sync_segments"], new_terminal_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 created" in result.stdout
    assert list(Tag.objects.values_list("segment_id", "name")) == [(7, "VIP")]
    assert [entry["path"] for entry in cio_emulator.requests()] == ["/v1/segments"]


def test_the_wrapper_says_when_no_emulator_answers(new_terminal_env):
    env = {**new_terminal_env, "EMULATOR_PORT": "9"}  # discard: nothing listens there

    result = run(["scripts/manage_dev.py", "webhook_urls"], env)

    assert result.returncode == 0
    assert "no Customer.io emulator answers on http://127.0.0.1:9; start `make run` first." in result.stderr
