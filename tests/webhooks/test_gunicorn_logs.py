"""gunicorn's own logs follow LOG_FORMAT (gunicorn.conf.py's logger class): with json, its error log and access log
are JSON lines too, the access line with its fields and the request's id; in both formats no access key and no
set-password or login-link token reaches them, and refused webhooks stay out of the access log."""

import json
import subprocess
import time

import pytest
import requests
from django.conf import settings

from settings_app.models import WebhookSettings

from .intake.test_wire import GUNICORN, free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RESET_TOKEN = "cabc12-" + "fedcba9876543210fedc"
LOGIN_LINK_TOKEN = "1-tabc12-" + "0123456789abcdef" * 2


def run_gunicorn(env: dict, tmp_path, log_format: str, send) -> tuple[str, str]:
    """Start gunicorn with LOG_FORMAT, call `send(base_url)`, stop it; (access log, error log)."""
    port = free_port()
    env = {
        **env,
        "LOG_FORMAT": log_format,
        "ALLOWED_HOSTS": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
        "TRUSTED_PROXIES": "127.0.0.1",  # the test stands for the proxy: its X-Request-ID is kept
    }
    errors = (tmp_path / "error.log").open("w")
    process = subprocess.Popen([GUNICORN, "wpfusion_site.wsgi"], cwd=settings.BASE_DIR, env=env, stderr=errors)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "error.log").read_text()
            try:
                requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.2)
        send(base)
    finally:
        process.terminate()
        process.wait(timeout=30)
        errors.close()
    return (tmp_path / "access.log").read_text(), (tmp_path / "error.log").read_text()


def send_requests(key: str):
    def send(base: str):
        answer = requests.post(
            f"{base}/?wpf_action=test&access_key={key}", json={}, headers={"X-Request-ID": "cio-42"}, timeout=10
        )
        assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "cio-42"
        requests.get(f"{base}/accounts/reset/MQ/{RESET_TOKEN}/", timeout=10, allow_redirects=False)
        requests.get(f"{base}/accounts/login-link/{LOGIN_LINK_TOKEN}/", timeout=10, allow_redirects=False)
        assert requests.post(f"{base}/?wpf_action=test&access_key=wrong-key", json={}, timeout=10).status_code == 403

    return send


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_gunicorn_logs_follow_log_format_without_secrets(emulator_env, tmp_path, log_format):
    key = WebhookSettings.load().access_key
    access, errors = run_gunicorn(emulator_env, tmp_path, log_format, send_requests(key))
    for secret in (key, RESET_TOKEN, LOGIN_LINK_TOKEN, "wrong-key"):
        assert secret not in access + errors
    if log_format == "plain":
        assert '"POST / HTTP/1.1" 200' in access
        assert "GET /accounts/reset/MQ/********/ HTTP/1.1" in access
        assert "GET /accounts/login-link/********/ HTTP/1.1" in access
        assert "Starting gunicorn" in errors
        return
    lines = [json.loads(line) for line in access.splitlines()]
    webhook = [line for line in lines if line["method"] == "POST"]
    assert len(webhook) == 1  # the refused request is not in the access log
    assert {key: webhook[0][key] for key in ("logger", "message", "path", "status", "request_id")} == {
        "logger": "gunicorn.access",
        "message": "POST / 200",
        "path": "/",
        "status": 200,
        "request_id": "cio-42",
    }
    assert webhook[0]["duration_ms"] >= 0 and webhook[0]["bytes"] > 0
    assert all(line["request_id"] for line in lines)
    assert any(line["path"] == "/accounts/reset/MQ/********/" for line in lines)
    assert any(line["path"] == "/accounts/login-link/********/" for line in lines)
    logged = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    assert any(line["logger"] == "gunicorn.error" and "Starting gunicorn" in line["message"] for line in logged)
    # Python warnings (not log records) are the only other lines on standard error.
    assert all(line.startswith("{") or "Warning" in line or line.startswith(" ") for line in errors.splitlines())
