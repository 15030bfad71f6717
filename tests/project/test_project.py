import io
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command


def test_refuses_to_start_without_secret_key_when_debug_is_off():
    env = {key: value for key, value in os.environ.items() if key not in {"SECRET_KEY", "DEBUG"}}
    env.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "SECRET_KEY is not set: set SECRET_KEY in the environment or .env (required when DEBUG is off)."
    )


def test_debug_is_off_unless_asked_for():
    env = {key: value for key, value in os.environ.items() if key != "DEBUG"}
    env.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull, "SECRET_KEY": "k"})
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False"


@pytest.mark.django_db
def test_system_checks_are_clean():
    call_command("check", "--fail-level", "WARNING")


@pytest.mark.django_db
def test_migrations_are_in_step_with_the_models():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_sqlite_is_configured_for_several_processes():
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("SQLite settings only")
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert database["OPTIONS"]["timeout"] >= 20
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]


def settings_in_subprocess(code: str, **env_values) -> str:
    env = {key: value for key, value in os.environ.items() if key not in {"TRUSTED_PROXIES", "WEBHOOK_TRUSTED_PROXIES"}}
    env.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull, "SECRET_KEY": "k"})
    env.update(env_values)
    script = f"import django; django.setup(); from django.conf import settings; print({code})"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_old_trusted_proxies_name_is_still_read():
    assert settings_in_subprocess("settings.TRUSTED_PROXIES", WEBHOOK_TRUSTED_PROXIES="10.0.0.5") == "['10.0.0.5']"
    both = {"WEBHOOK_TRUSTED_PROXIES": "10.0.0.5", "TRUSTED_PROXIES": "10.0.0.6,10.0.0.7"}
    assert settings_in_subprocess("settings.TRUSTED_PROXIES", **both) == "['10.0.0.6', '10.0.0.7']"
