"""Driving the queue from a test: webhooks accepted for the background, and real `webhook_worker` processes."""

import json
import signal
import subprocess
import sys
import time

from django.conf import settings as django_settings

from settings_app.models import WebhookSettings


def run_worker_until_idle(env, timeout=90):
    """A real worker that processes what is ready and exits."""
    subprocess.run(
        [sys.executable, "manage.py", "webhook_worker", "--batch"],
        cwd=django_settings.BASE_DIR,
        env=env,
        check=True,
        timeout=timeout,
        capture_output=True,
    )


def start_worker(env):
    return subprocess.Popen(
        [sys.executable, "manage.py", "webhook_worker", "--interval", "0.2"],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(condition, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def queued(client, action, email="ann@example.com", body=None, headers=None, **params):
    key = WebhookSettings.load().access_key
    query = "&".join(
        [f"wpf_action={action}", f"access_key={key}", "async=true", *(f"{k}={v}" for k, v in params.items())]
    )
    response = client.post(
        f"/?{query}", data=json.dumps(body or {"email": email}), content_type="application/json", headers=headers or {}
    )
    assert response.status_code == 200, response.content
    return response.json()
