"""manage.py cio_emulator: the management command starts the Customer.io emulator on a free port with a fixture and
answers over HTTP like the in-process server."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import APP_AUTH, TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_management_command_serves_the_demo_fixture():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings", "ENV_FILE": os.devnull}
    command = [sys.executable, "manage.py", "cio_emulator", "--port", "0", "--fixture", "cio_emulator/demo.json"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line + process.stderr.read()
        url = line.removeprefix("listening on ")

        wrong = requests.get(f"{url}/v1/segments", headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT)
        right = requests.get(f"{url}/v1/segments", headers=APP_AUTH, timeout=TIMEOUT)

        assert wrong.status_code == 401
        assert right.status_code == 200
        assert [s["name"] for s in right.json()["segments"]] == [
            "VIP",
            "Newsletter",
            "Active customers",
            "Trial",
            "Payment failed",
            "Started the course",
        ]
    finally:
        process.terminate()
        returncode = process.wait(timeout=10)
        stderr = process.stderr.read()
    assert returncode == 0
    assert "Traceback" not in stderr
