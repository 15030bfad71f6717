"""METRICS_TOKEN and PROMETHEUS_MULTIPROC_DIR as production sets them: `check --deploy` stays clean; a directory
that is not there (or not writable) stops the site with one sentence, not a traceback from the first counter."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db  # the suite's autouse fixtures seed the test database

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p9V2kq7Xc4LbN8sT1wYzR6mJ3hF5dG0aQeUiOpAsDfGhJkLzXcVbNm",
    "ALLOWED_HOSTS": "mydomain.com",
    "SITE_BASE_URL": "https://mydomain.com",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
    "TRUSTED_PROXIES": "127.0.0.1",
    "BEHIND_TLS_PROXY": "true",
    "METRICS_TOKEN": "q3Jx-metrics-token-for-the-check-4d2a9",
}


def check(**env_values) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SECURE_", "DJANGO_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull, **PRODUCTION, **env_values})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_production_with_metrics_passes_check_deploy(tmp_path):
    result = check(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        pytest.param("read-only", marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")),
    ],
)
def test_a_directory_that_cannot_be_written_is_refused_in_one_sentence(tmp_path, kind):
    directory = tmp_path / "metrics"
    if kind == "read-only":
        directory.mkdir(mode=0o500)

    result = check(PROMETHEUS_MULTIPROC_DIR=str(directory))

    assert result.returncode != 0
    assert result.stderr.strip() == f"PROMETHEUS_MULTIPROC_DIR={directory} is not a directory this user can write."


def test_a_token_short_enough_to_guess_is_refused_in_one_sentence(tmp_path):
    result = check(METRICS_TOKEN="abc123", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    assert result.returncode != 0
    assert result.stderr.strip() == (
        "METRICS_TOKEN is too short to keep /metrics private: give it 32 characters or more."
    )
