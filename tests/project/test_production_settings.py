"""The production environment of the docs' Production page passes `check --deploy`; each HTTPS setting can be
turned down for a plain-HTTP staging host; the proxy and mail settings refuse what would be unsafe."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

# The production .env of docs/production.md, as a site owner fills it in.
pytestmark = pytest.mark.django_db  # run alone too: the suite's autouse fixtures seed the test database

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "p9V2kq7Xc4LbN8sT1wYzR6mJ3hF5dG0aQeUiOpAsDfGhJkLzXcVbNm",
    "ALLOWED_HOSTS": "mydomain.com",
    "CSRF_TRUSTED_ORIGINS": "https://mydomain.com",
    "SITE_BASE_URL": "https://mydomain.com",
    "DATABASE_URL": "postgres://wpfusion:secret@127.0.0.1:5432/wpfusion",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
    "TRUSTED_PROXIES": "127.0.0.1",
    "BEHIND_TLS_PROXY": "true",
}


def manage(*args, **env_values) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SECURE_", "DJANGO_"))}
    env = {key: value for key, value in env.items() if key not in {"DEBUG", "EMAIL_URL", "TRUSTED_PROXIES"}}
    env.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull, **env_values})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=90
    )


def test_check_deploy_finds_no_issue_in_the_readme_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_a_mail_server_check_deploy_says_so():
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "EMAIL_URL"}
    result = manage("check", "--deploy", **env)
    assert "users.W001" in result.stderr
    assert "EMAIL_URL is not set" in result.stderr
    printing = manage("check", "--deploy", **{**env, "EMAIL_URL": "consolemail://"})
    assert "users.W002" in printing.stderr


def test_one_variable_turns_https_down_for_a_staging_host():
    result = manage("check", "--deploy", **{**PRODUCTION_ENV, "SECURE_SSL_REDIRECT": "false"})
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr
    # HSTS includeSubDomains and preload are the owner's call: never reported, whatever the environment.
    assert "security.W005" not in result.stderr and "security.W021" not in result.stderr


def test_a_tls_proxy_without_trusted_proxies_is_refused():
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "TRUSTED_PROXIES"}
    result = manage("check", **env)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "BEHIND_TLS_PROXY is on but TRUSTED_PROXIES is empty: set it to the proxy's address."
    )


def test_the_systemd_units_verify(tmp_path):
    """deploy/ as installed: the units, with the checkout in place of /srv/wpfusion-site."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze")
    venv_python = Path(sys.executable)
    root = tmp_path / "srv"
    (root / ".venv" / "bin").mkdir(parents=True)
    for name in ("python", "gunicorn"):
        (root / ".venv" / "bin" / name).symlink_to(venv_python.with_name(name))
    units = tmp_path / "units"
    units.mkdir()
    for unit in (Path(settings.BASE_DIR) / "deploy").glob("*.*"):
        if unit.suffix in (".service", ".timer"):
            (units / unit.name).write_text(unit.read_text().replace("/srv/wpfusion-site", str(root)))
    names = sorted(str(units / name) for name in os.listdir(units))
    names = [name.replace("@.service", "@1.service") for name in names]
    for template in units.glob("*@.service"):
        (units / template.name.replace("@.service", "@1.service")).write_text(template.read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", *names], capture_output=True, text=True, timeout=60, cwd=units
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
