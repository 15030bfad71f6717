"""Real `webhook_worker` processes for tests that need one (the queue's and the segment sender's), and waiting for
what they do."""

import signal
import subprocess
import sys
import time

from django.conf import settings as django_settings


def run_worker_until_idle(env, timeout=120):
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


def wait_for(condition, timeout=90, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
