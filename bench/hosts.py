"""Several hosts on one PostgreSQL and one Redis, through the faults production meets.

    .venv/bin/python bench/hosts.py [--queued N] [--sync M]

Starts a PostgreSQL (an `initdb` data folder) and a Redis of its own, each in a temporary folder on a free loopback
port, and the Customer.io emulator at Customer.io's limits (App API 10 requests/s, 429 beyond). Then three web hosts
— gunicorn as production runs it (gunicorn.conf.py, the production settings, behind a TLS proxy on the host) — and
three worker hosts (`webhook_worker`), each process with its own host name (a UTS namespace of its own, `unshare
--uts`, when run as root) and each worker with its own id. It sends a broadcast: 20,000 queued `update_tags` for as
many people in 20 segments plus 2,000 synchronous ones for 2,000 others, spread over the web hosts and retried as
Customer.io retries them (bench/hosts_traffic.py). Meanwhile one worker host is SIGKILLed while it holds a claimed
batch, Redis is stopped for 15 s and started empty, and PostgreSQL is restarted (`pg_ctl restart -m fast`). Prints:
whether every delivery answered 200 was processed exactly once (in the database, and in the emulator's log), the
answers while PostgreSQL restarted, the App API's most requests in any one second, the drain after the faults beside
Customer.io's floor, /healthz during and after. Figures, not pass/fail; every loop is bounded; loopback only (the
machine's own PostgreSQL and Redis are never touched).
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import production_site  # noqa: E402
from hosts_run import run  # noqa: E402
from local_servers import LocalPostgres, LocalRedis  # noqa: E402

HOSTS = 3
SEGMENTS = 20
RATE = 10  # Customer.io's App API limit, requests/s


def fixture(people: int) -> dict:
    segments = [{"id": n, "name": f"Broadcast {n}", "type": "manual"} for n in range(1, SEGMENTS + 1)]
    customers = [
        {"email": f"person{n}@example.com", "id": f"p{n}", "attributes": {}, "segments": [1 + n % SEGMENTS]}
        for n in range(people)
    ]
    return {"segments": segments, "customers": customers}


def host_command(name: str, command: list[str]) -> list[str]:
    """`command` as a host of its own: in a UTS namespace named `name` when this runs as root (so the worker's
    heartbeat and the logs name that host), else as it is."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', name, *command]
    return command


def make_people(people: int) -> None:
    from django.contrib.auth import get_user_model

    from users.models import Role

    User = get_user_model()
    role = Role.get_default()
    emails = [f"person{n}@example.com" for n in range(people)]
    User.objects.bulk_create(
        [User(username=email, email=email, email_normalized=email, role=role) for email in emails], batch_size=2000
    )


def server_version(database_url: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as connection:
        return "PostgreSQL " + connection.execute("SHOW server_version").fetchone()[0].split()[0]


def start_web_host(processes, env: dict, name: str) -> str:
    port = production_site.free_port()
    command = host_command(name, [production_site.GUNICORN, "wpfusion_site.wsgi"])
    processes.start(name, command, {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"})
    url = f"http://127.0.0.1:{port}"
    production_site.wait_until_answers(f"{url}/healthz", processes, name)
    return url


LOG_LINES = {
    "database gone": "The database is unavailable",
    "database back": "The database is back",
    "Redis gone": "Redis is unavailable",
    "Redis back": "Redis is back",
    "released": "whose processing was cut off",
    "recovered": "Recovered",
    "tracebacks": "Traceback",
}


def log_summary(processes, name: str) -> str:
    text = processes.output(name)
    counts = [f"{label} {text.count(words)}" for label, words in LOG_LINES.items() if text.count(words)]
    return ", ".join(counts) or "none"


def start_emulator(processes) -> str:
    """The emulator in a process of its own, ahead of the site's processes for the CPU (as root: nice -10). It
    stands for Customer.io's servers, which do not share the site's two cores: in the benchmark's process the
    senders' threads, and at the same priority the site's processes, would delay its reading of each request's
    arrival time by up to a tenth of a second, and blur the App API figures it keeps."""
    port = production_site.free_port()
    env = {**os.environ, "ENV_FILE": os.devnull, "DEBUG": "false", "SECRET_KEY": "emulator-only"}
    env.update({"ENABLE_CIO_EMULATOR": "true", "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings"})
    command = [production_site.PYTHON, "manage.py", "cio_emulator", "--port", str(port), "--rate-limit", str(RATE)]
    if os.geteuid() == 0:
        command = ["nice", "-n", "-10", *command]
    processes.start("emulator", command, env)
    url = f"http://127.0.0.1:{port}"
    production_site.wait_until_answers(f"{url}/_emulator/requests", processes, "emulator")
    return url


def main(queued: int, sync: int) -> None:
    from cio_emulator import EmulatorControl

    people = queued + sync
    workdir = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    processes = production_site.Processes(workdir)
    with LocalPostgres(settings={"max_connections": "200"}) as postgres, LocalRedis() as redis:
        emulator_url = start_emulator(processes)
        database_url = postgres.create_database("site")
        env = production_site.production_env(
            workdir,
            database_url,
            emulator_url,
            REDIS_URL=redis.url,
            GUNICORN_ACCESS_LOG="",
            WEB_CONCURRENCY="1",
            GUNICORN_THREADS="8",
            CUSTOMERIO_READ_TIMEOUT="2",
            WEBHOOK_RETRY_BASE_SECONDS="1",
            WEBHOOK_RETRY_MAX_SECONDS="8",
        )
        production_site.manage(env, "migrate", "--noinput")
        # This process reads the database too (the queue's state, the counts), without Redis.
        os.environ.update({"DJANGO_SETTINGS_MODULE": "wpfusion_site.settings", "ENV_FILE": os.devnull, "DEBUG": "0"})
        os.environ.update({"SECRET_KEY": env["SECRET_KEY"], "DATABASE_URL": database_url, "LOG_LEVEL": "ERROR"})
        import django

        django.setup()
        from settings_app.models import WebhookSettings

        make_people(people)
        access_key = WebhookSettings.load().access_key
        control = EmulatorControl(emulator_url)
        control.reset(fixture(people))

        web_urls, worker_ids = [], {}
        killed: list[str] = []
        try:
            for n in range(1, HOSTS + 1):
                web_urls.append(start_web_host(processes, env, f"web{n}"))
            for n in range(1, HOSTS + 1):
                worker_ids[f"worker{n}-1"] = f"worker{n}"
                command = [production_site.PYTHON, "manage.py", "webhook_worker", "--worker-id", f"worker{n}-1"]
                processes.start(f"worker{n}", host_command(f"worker{n}", command), env)
            print(
                f"Several hosts: {HOSTS} web hosts (gunicorn, 1 process x 8 threads each) and {HOSTS} worker hosts on "
                f"one {server_version(database_url)} and one Redis of the benchmark's own; emulator App "
                f"API limit {RATE}/s"
            )
            print(
                f"Broadcast: {queued} queued update_tags + {sync} synchronous, {people} people in {SEGMENTS} segments"
            )
            run(processes, postgres, redis, control, web_urls, worker_ids, access_key, queued, sync, killed)
        finally:
            processes.stop_all()
            print("\nHost logs (their WARNING lines, counted):")
            for name in [*(f"web{n}" for n in range(1, HOSTS + 1)), *(f"worker{n}" for n in range(1, HOSTS + 1))]:
                print(f"  {name:8} {log_summary(processes, name)}" + ("  (SIGKILLed)" if name in killed else ""))
        print(f"  (their whole logs: {workdir})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queued", type=int, default=20_000)
    parser.add_argument("--sync", type=int, default=2_000)
    arguments = parser.parse_args()
    main(arguments.queued, arguments.sync)
