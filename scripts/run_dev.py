"""`make run`: the site on SQLite with DEBUG on, ready to try with no Customer.io account.

Runs the set-up steps, starts the Customer.io emulator with the demo contacts (unless real Customer.io credentials
are configured), the web server and one background worker; Ctrl-C stops every process this script started.
The development settings (scripts/dev_settings.py) live only in those processes' environment; `make manage`
applies the same ones to a command in another terminal.
"""

import contextlib
import signal
import subprocess
import sys
import threading

from dev_settings import (
    EMULATOR_HOST,
    EMULATOR_PORT,
    HOST,
    PORT,
    PYTHON,
    ROOT,
    base_env,
    emulator_env,
    real_customerio_configured,
)


def start_emulator(env):
    """Start the emulator with the demo fixture; return the process and the env pointing the site at it."""
    emulator = subprocess.Popen(
        [
            PYTHON,
            "manage.py",
            "cio_emulator",
            "--host",
            EMULATOR_HOST,
            "--port",
            EMULATOR_PORT,
            "--fixture",
            str(ROOT / "cio_emulator" / "demo.json"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = emulator.stdout.readline().strip()
    if not line.startswith("listening on "):
        emulator.kill()
        raise SystemExit(f"The Customer.io emulator did not start (port {EMULATOR_PORT} busy? set EMULATOR_PORT).")
    url = line.removeprefix("listening on ")
    # Keep reading what the emulator prints, so a full pipe can never stall it.
    threading.Thread(target=lambda: [print(out, end="") for out in emulator.stdout], daemon=True).start()
    print(f"Customer.io emulator with demo contacts: {url}")
    return emulator, emulator_env(env)


def manage(*args, env):
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def stop_on_signal(signum, frame):
    raise KeyboardInterrupt


def main():
    # Ctrl-C, and also SIGTERM (and SIGINT when a shell started us in the background with it ignored).
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    env = base_env()
    manage("migrate", "--noinput", env=env)
    manage("ensure_admin", env=env)
    print("\nWebhook URLs (paste into Customer.io):")
    manage("webhook_urls", env=env)
    print(f"\nAdmin: http://{HOST}:{PORT}/admin/\n")

    children = []
    if real_customerio_configured(env):
        print("Using the Customer.io workspace configured in the settings.")
    else:
        emulator, env = start_emulator(env)
        children.append(emulator)
        manage("demo_setup", env=env)  # the members area of the quick tour, on the emulator's demo segments
    children.append(subprocess.Popen([PYTHON, "manage.py", "webhook_worker"], cwd=ROOT, env=env))
    children.append(
        subprocess.Popen([PYTHON, "manage.py", "runserver", "--noreload", f"{HOST}:{PORT}"], cwd=ROOT, env=env)
    )
    try:
        while all(child.poll() is None for child in children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                children[-1].wait(timeout=1)
        if children[-1].returncode:
            print(f"The web server stopped. If port {PORT} is in use, set PORT (PORT=8010 make run).", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    return max((child.returncode or 0) for child in children)


if __name__ == "__main__":
    sys.exit(main())
