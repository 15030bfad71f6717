"""The backfill commands as separate processes: what an operator sees on a terminal and in a log, exit statuses,
and stopping one with a signal."""

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from django.conf import settings

from users.models import ImportRun, User

from .conftest import make_users, population, run

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def manage(args, env, **kwargs):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, text=True, timeout=60, **kwargs
    )


def test_off_a_terminal_progress_is_plain_lines_and_the_summary_goes_to_stdout(emulator_env, cio_emulator):
    cio_emulator.reset(population(300))
    make_users(range(300))

    done = manage(["cio_resync_tags", "--all"], emulator_env, capture_output=True)

    assert done.returncode == 0, done.stderr
    assert "cio_resync_tags: Scanning segment memberships: 5/5 segments (100%)" in done.stderr
    assert "\r" not in done.stderr
    assert done.stdout.startswith("cio_resync_tags: 0 created, 300 updated, 0 unchanged")

    unconfigured = {
        **emulator_env,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",  # the test settings carry the emulator's key
        "SECRET_KEY": "test-only",
        "CUSTOMERIO_APP_API_KEY": "",
    }
    failed = manage(["cio_resync_tags", "--all"], unconfigured, capture_output=True)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "CommandError: Customer.io is not configured: Customer.io App API key is not set (CUSTOMERIO_APP_API_KEY)."
    )


def test_on_a_terminal_progress_is_a_bar(emulator_env, cio_emulator):
    cio_emulator.reset(population(30))
    make_users(range(30))
    controller, terminal = pty.openpty()
    # A new pseudo-terminal is 0 columns wide; a real one is not.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = manage(["cio_resync_tags", "--all"], emulator_env, stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        shown = b""
        while chunk := _read(controller):
            shown += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert "Scanning segment memberships: 100%" in shown.decode(errors="replace")
    assert "5/5" in shown.decode(errors="replace")


def _read(fd) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end is closed: all read
        return b""


def test_sigterm_stops_an_import_cleanly_and_it_resumes(emulator_env, cio_emulator):
    cio_emulator.reset(population(1000))
    cio_emulator.configure(latency_ms=40)  # slow enough to be stopped half-way
    importing = subprocess.Popen(
        [sys.executable, "manage.py", "cio_import_users", "--segment", "1"],
        cwd=settings.BASE_DIR,
        env=emulator_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while User.objects.count() < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        importing.send_signal(signal.SIGTERM)
        out, err = importing.communicate(timeout=30)
    finally:
        importing.kill()
    assert importing.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        "CommandError: Interrupted. The run's position is saved: continue it with --resume."
    )
    assert "Traceback" not in err
    stopped = ImportRun.objects.get()
    assert stopped.status == "interrupted"
    assert stopped.members_done == User.objects.count() < 1000

    cio_emulator.configure(latency_ms=0)
    resumed = run("cio_import_users", "--segment", "1", "--resume")
    assert resumed.code == 0, resumed.text
    assert User.objects.count() == 1000
    stopped.refresh_from_db()
    assert (stopped.status, stopped.created) == ("finished", 1000)
