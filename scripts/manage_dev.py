"""`make manage ARGS="..."`: run `manage.py` with the development settings `make run` uses, for a second terminal.

    make manage ARGS="cio_sync_segments"
    .venv/bin/python scripts/manage_dev.py cio_sync_segments      (the same)

With real Customer.io credentials configured (as `make run` decides), the command uses them; otherwise it talks to
the emulator `make run` started (EMULATOR_PORT, default 8765).
"""

import os
import socket
import sys

from dev_settings import (
    EMULATOR_HOST,
    EMULATOR_PORT,
    EMULATOR_URL,
    PYTHON,
    ROOT,
    base_env,
    emulator_env,
    real_customerio_configured,
)


def emulator_answers() -> bool:
    try:
        socket.create_connection((EMULATOR_HOST, int(EMULATOR_PORT)), timeout=1).close()
    except OSError:
        return False
    return True


def main(args) -> None:
    env = base_env()
    if not real_customerio_configured(env):
        env = emulator_env(env)
        if not emulator_answers():
            print(f"Note: no Customer.io emulator answers on {EMULATOR_URL}; start `make run` first.", file=sys.stderr)
    os.chdir(ROOT)
    # exec: the command gets this terminal's signals and exit status as if run directly.
    os.execve(PYTHON, [PYTHON, "manage.py", *args], env)  # noqa: S606 (an argument list, no shell)


if __name__ == "__main__":
    main(sys.argv[1:])
