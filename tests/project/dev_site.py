"""The development site `make run` starts (scripts/run_dev.py: the emulator, the worker, runserver), for the tests
that run the docs' commands against it: on free ports and its own SQLite file whatever database the suite runs on
(`make run` is the SQLite development setup), in a fresh shell's environment: none of the site's settings, no
`.env`."""

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.worker_processes import wait_for

ROOT = Path(__file__).resolve().parents[2]
# The addresses the docs show (`make run`'s defaults); the tests' server listens elsewhere.
PAGE_SITE = "http://127.0.0.1:8000"
PAGE_EMULATOR = "http://127.0.0.1:8765"
# Settings a developer's shell may hold that `make run` must not see here (it would read them).
SETTINGS_PREFIXES = ("CUSTOMERIO_", "DATABASE_", "WEBHOOK_", "ADMIN_", "GUNICORN_")
SETTINGS_NAMES = {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "SITE_BASE_URL", "REDIS_URL", "ALLOWED_HOSTS"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DevServer:
    site: str
    emulator: str
    env: dict = field(repr=False)
    process: subprocess.Popen = field(repr=False)
    output: list[str] = field(repr=False)

    def printed(self) -> str:
        return "".join(self.output)

    def url(self, page_url: str, key: str) -> str:
        url = page_url.replace(PAGE_SITE, self.site).replace(PAGE_EMULATOR, self.emulator)
        return url.replace("KEY", key)

    def manage(self, args: str) -> subprocess.CompletedProcess:
        """`make manage ARGS="<args>"` in a second terminal (scripts/manage_dev.py), against this site; it must
        succeed."""
        result = subprocess.run(
            [sys.executable, "scripts/manage_dev.py", *shlex.split(args)],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"make manage ARGS={args!r}\n{result.stdout}{result.stderr}"
        return result


@pytest.fixture
def dev_server(tmp_path):
    """scripts/run_dev.py (what `make run` runs) on free ports and a new SQLite file; stopped with SIGTERM, as
    Ctrl-C stops it."""
    port, emulator_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SETTINGS_NAMES and not key.startswith(SETTINGS_PREFIXES)
    }
    env.update(
        ENV_FILE=os.devnull,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PORT=str(port),
        EMULATOR_PORT=str(emulator_port),
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "scripts/run_dev.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    server = DevServer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{emulator_port}", env, process, output)

    def answers():
        assert process.poll() is None, f"make run stopped:\n{server.printed()}"
        try:
            requests.get(f"{server.site}/healthz", timeout=2)
        except requests.ConnectionError:
            return False
        return True

    try:
        wait_for(answers, 180, "the development server")
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
