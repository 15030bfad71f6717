"""`make run`: the site on SQLite with DEBUG on, ready to try with no Customer.io account.

Runs the set-up steps, then serves; Ctrl-C stops every process this script started.
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST, PORT = "127.0.0.1", "8000"


def manage(*args, env):
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main():
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    env.setdefault("SITE_BASE_URL", f"http://{HOST}:{PORT}")
    manage("migrate", "--noinput", env=env)
    manage("ensure_admin", env=env)
    print("\nWebhook URLs (paste into Customer.io):")
    manage("webhook_urls", env=env)
    print(f"\nAdmin: http://{HOST}:{PORT}/admin/\n")

    children = [subprocess.Popen([PYTHON, "manage.py", "runserver", "--noreload", f"{HOST}:{PORT}"], cwd=ROOT, env=env)]
    try:
        while all(child.poll() is None for child in children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                children[0].wait(timeout=1)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    return max((child.returncode or 0) for child in children)


if __name__ == "__main__":
    sys.exit(main())
