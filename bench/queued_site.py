"""A site in queued mode for the queue benchmarks (burst.py, adds.py, broadcast.py, sync.py): its processes (web
server and webhook workers) on a fresh database beside the Customer.io emulator, webhooks fired at it from many
threads, and the wait for its queue to drain."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
SENDERS = 32
DRAIN_TIMEOUT = 900  # seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Site:
    """The site's processes (web server and workers) on one database."""

    def __init__(self, workdir: Path, emulator_url: str):
        self.port = free_port()
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'bench.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
            "ENV_FILE": os.devnull,
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback
            "SECRET_KEY": "bench-only-secret-key",
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": database_url,
            "CUSTOMERIO_APP_API_URL": emulator_url,
            "CUSTOMERIO_TRACK_API_URL": emulator_url,
            "CUSTOMERIO_APP_API_KEY": "emulator-app-key",
            "CUSTOMERIO_SITE_ID": "emulator-site",
            "CUSTOMERIO_TRACK_API_KEY": "emulator-track-key",
            "CUSTOMERIO_READ_TIMEOUT": "2",
            "WEBHOOK_RETRY_BASE_SECONDS": "1",
            "WEBHOOK_RETRY_MAX_SECONDS": "8",
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update(
            {
                key: self.env[key]
                for key in ("DJANGO_SETTINGS_MODULE", "ENV_FILE", "DEBUG", "SECRET_KEY", "DATABASE_URL")
            }
        )
        self.processes: list[subprocess.Popen] = []

    def manage(self, *args):
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def start(self, workers: int = 2, server: str = "gunicorn"):
        """The site and `workers` webhook workers. `server`: gunicorn as production runs it (gunicorn.conf.py), or
        runserver (one process: what bench/sync.py measures coalescing in). runserver's listen backlog is 10, so 32
        senders at once get connections reset now and then: the bursts use gunicorn."""
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if server == "gunicorn":
            command = [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wpfusion_site.wsgi:application"]
        else:
            command = [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        env = {**self.env, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.processes.append(subprocess.Popen(command, cwd=ROOT, env=env, **quiet))
        for _ in range(workers):
            self.processes.append(
                subprocess.Popen([PYTHON, "manage.py", "webhook_worker"], cwd=ROOT, env=self.env, **quiet)
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise SystemExit("the site did not start")

    def stop(self):
        stop_processes(self.processes)
        self.processes.clear()


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to all first (they stop side by side), then 20 s for each before it is killed."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def fire(site_url: str, access_key: str, sends, email=lambda n: f"contact{n}@example.com") -> tuple[list[float], int]:
    """Send every webhook (async=true) from SENDERS threads; return accept latencies (s) and how many were
    accepted (200 queued)."""
    local = threading.local()

    def send(item):
        action, n = item
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.post(
            f"{site_url}/?wpf_action={action}&access_key={access_key}&async=true",
            json={"email": email(n)},
            timeout=60,
        )
        return time.perf_counter() - started, response.status_code == 200 and response.json().get("status") == "queued"

    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        answers = list(pool.map(send, sends))
    return [latency for latency, _ in answers], sum(1 for _, ok in answers if ok)


def wait_for_drain() -> float:
    from webhooks.models import WebhookDelivery

    deadline = time.monotonic() + DRAIN_TIMEOUT
    busy = (*WebhookDelivery.WAITING, WebhookDelivery.Status.PROCESSING)
    while time.monotonic() < deadline:
        if not WebhookDelivery.objects.filter(status__in=busy).exists():
            return time.monotonic()
        time.sleep(0.5)
    return time.monotonic()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


@contextmanager
def emulated_site(prefix: str, rate_limit: int):
    """A fresh site (migrated; Django set up in this process, on its database) beside an emulator with that App API
    limit: yields (site, emulator, its control, the site's access key). The site is not started."""
    from cio_emulator import EmulatorControl, EmulatorServer

    with (
        tempfile.TemporaryDirectory(prefix=prefix) as workdir,
        EmulatorServer(port=0, rate_limit=rate_limit) as emulator,
    ):
        site = Site(Path(workdir), emulator.url)
        site.manage("migrate", "--noinput")
        import django

        django.setup()
        from settings_app.models import WebhookSettings

        yield site, emulator, EmulatorControl(emulator.url), WebhookSettings.load().access_key
