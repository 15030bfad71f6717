"""The site started the way production runs it — gunicorn with gunicorn.conf.py, the production settings (DEBUG off,
HTTPS behind a TLS proxy), a fresh PostgreSQL database, `webhook_worker` processes and, instead of Customer.io, the
emulator — for the production smoke test (scripts/smoke_production.py) and bench/accept.py."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
# What the TLS proxy in front adds to every request it forwards (the site trusts it from 127.0.0.1).
VIA_PROXY = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_answers(url: str = DEFAULT_POSTGRES) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def fresh_database(server_url: str, name: str):
    """An empty PostgreSQL database on the server of `server_url`, dropped afterwards; yields its URL."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(workdir: Path, database_url: str, emulator_url: str, **overrides) -> dict:
    """The production settings of docs/production.md, on loopback: DEBUG off, a secret key, HTTPS behind a TLS proxy
    on this host, PostgreSQL, a mail server, Customer.io replaced by the emulator."""
    keep = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **keep,
        "ENV_FILE": os.devnull,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_BASE_URL": "https://127.0.0.1",
        "DATABASE_URL": database_url,
        "STATIC_ROOT": str(workdir / "static"),
        "EMAIL_URL": "smtp://127.0.0.1:1",
        "TRUSTED_PROXIES": "127.0.0.1",
        "BEHIND_TLS_PROXY": "true",
        "CUSTOMERIO_APP_API_URL": emulator_url,
        "CUSTOMERIO_TRACK_API_URL": emulator_url,
        "CUSTOMERIO_APP_API_KEY": "emulator-app-key",
        "CUSTOMERIO_SITE_ID": "emulator-site",
        "CUSTOMERIO_TRACK_API_KEY": "emulator-track-key",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


class Processes:
    """Processes started for one run, each with its output in a file; stopped with SIGTERM."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        output = open(self.workdir / f"{name}.out", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        process.output_file = output
        self.running[name] = process
        return process

    def output(self, name: str) -> str:
        return (self.workdir / f"{name}.out").read_text()

    def stop(self, name: str, timeout: float = 60) -> int | None:
        """SIGTERM, then wait; None when the process did not stop in time (it is killed)."""
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        process.output_file.close()
        return code

    def stop_all(self) -> dict[str, int | None]:
        return {name: self.stop(name) for name in list(self.running)}


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def start_emulator(processes: Processes, fixture: Path | None = None) -> str:
    """`manage.py cio_emulator` on a free port (the emulator's app is installed with ENABLE_CIO_EMULATOR); its URL."""
    port = free_port()
    env = {**os.environ, "ENV_FILE": os.devnull, "DEBUG": "false", "SECRET_KEY": "emulator-only"}
    env.update({"ENABLE_CIO_EMULATOR": "true", "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings"})
    command = [PYTHON, "manage.py", "cio_emulator", "--port", str(port), "--rate-limit", "0"]
    if fixture:
        command += ["--fixture", str(fixture)]
    processes.start("emulator", command, env)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/_emulator/requests", processes, "emulator")
    return url


def start_gunicorn(processes: Processes, env: dict, name: str = "gunicorn", **variables) -> str:
    """gunicorn as the systemd unit starts it (`gunicorn wpfusion_site.wsgi`, reading gunicorn.conf.py)."""
    port = free_port()
    processes.start(name, [GUNICORN, "wpfusion_site.wsgi"], {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", **variables})
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/healthz", processes, name)
    return url


def wait_until_answers(url: str, processes: Processes, name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes.running[name].poll() is not None:
            raise RuntimeError(f"{name} exited:\n{processes.output(name)}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout:.0f} s:\n{processes.output(name)}")


def access_key(env: dict) -> str:
    """The site's access key, read from `manage.py webhook_urls` as an operator would."""
    for line in manage(env, "webhook_urls", "--base-url", "https://127.0.0.1").splitlines():
        if "access_key=" in line:
            return line.split("access_key=", 1)[1].split("&", 1)[0].strip()
    raise RuntimeError("webhook_urls printed no access key")
