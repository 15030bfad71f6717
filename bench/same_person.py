"""One person's concurrent webhooks: sync vs threaded (gthread) gunicorn workers, with the production settings.

    .venv/bin/python bench/same_person.py [postgres://postgres@127.0.0.1:5432/postgres]

On a fresh PostgreSQL database, with Customer.io (the emulator) answering in 0.5 s, six `update_tags` webhooks for one
person are sent at once to two gunicorn processes with sync workers (one thread) and then with gthread workers: how
far apart the site received them, how long a /healthz probe sent meanwhile waited, and how long the answers took.
Figures, not pass/fail. (It was part of bench/accept.py.)
"""

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    VIA_PROXY,
    Processes,
    access_key,
    fresh_database,
    manage,
    postgres_answers,
    production_env,
    start_emulator,
    start_gunicorn,
)

WEB = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "8", "GUNICORN_ACCESS_LOG": ""}
SAME_PERSON = 6
CUSTOMERIO_LATENCY_MS = 500


def measure_same_person(workdir: Path, env: dict, database_url: str, key: str, emulator: str) -> dict[str, tuple]:
    """Six update_tags for one person at once, Customer.io answering in 0.5 s: sync vs gthread workers."""
    requests.post(f"{emulator}/_emulator/settings", json={"latency_ms": CUSTOMERIO_LATENCY_MS}, timeout=10)
    results = {}
    for worker_class in ("sync", "gthread"):
        processes = Processes(workdir)
        try:
            # gunicorn turns sync workers with threads into gthread ones: sync means one thread.
            threads = "1" if worker_class == "sync" else WEB["GUNICORN_THREADS"]
            site = start_gunicorn(
                processes, env, **{**WEB, "GUNICORN_THREADS": threads}, GUNICORN_WORKER_CLASS=worker_class
            )
            with psycopg.connect(database_url, autocommit=True) as connection:
                connection.execute("DELETE FROM webhooks_webhookdelivery")
            url = f"{site}/?wpf_action=update_tags&access_key={key}"

            def send(n, url=url, worker_class=worker_class):
                headers = {**VIA_PROXY, "x-cio-delivery-id": f"{worker_class}-{n}-{time.time()}"}
                started = time.perf_counter()
                answer = requests.post(url, json={"email": "ann@example.com"}, headers=headers, timeout=60)
                return answer.status_code, time.perf_counter() - started

            with ThreadPoolExecutor(max_workers=SAME_PERSON + 1) as pool:
                sends = [pool.submit(send, n) for n in range(SAME_PERSON)]
                time.sleep(0.3)
                probe_started = time.perf_counter()
                requests.get(f"{site}/healthz", timeout=60)
                probe = time.perf_counter() - probe_started
                answers = [future.result() for future in sends]
            with psycopg.connect(database_url) as connection:
                first, last = connection.execute(
                    "SELECT min(received_at), max(received_at) FROM webhooks_webhookdelivery"
                ).fetchone()
        finally:
            processes.stop_all()
        results[worker_class] = ((last - first).total_seconds(), probe, answers)
    requests.post(f"{emulator}/_emulator/settings", json={"latency_ms": 0}, timeout=10)
    return results


def print_same_person(same_person):
    print(
        f"\n{SAME_PERSON} update_tags webhooks for one person sent at once, Customer.io answering in "
        f"{CUSTOMERIO_LATENCY_MS} ms, 2 gunicorn processes:"
    )
    print(
        f"{'worker class':<14}{'first to last received':>24}{'/healthz meanwhile':>20}{'slowest answer':>16}"
        f"{'answered in 4 s':>17}  statuses"
    )
    for worker_class, (spread, probe, answers) in same_person.items():
        slowest = max(seconds for _, seconds in answers)
        in_time = sum(1 for _, seconds in answers if seconds <= 4.0)
        statuses = json.dumps(sorted(status for status, _ in answers))
        print(
            f"{worker_class:<14}{spread:>22.2f} s{probe * 1000:>18.0f}ms{slowest:>14.2f} s"
            f"{in_time:>11} of {len(answers)}  {statuses}"
        )
    print("(Customer.io waits 4 s for an answer; a later one counts as a failure and is retried.)")


def main():
    server_url = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_POSTGRES
    if not postgres_answers(server_url):
        raise SystemExit(f"no PostgreSQL at {server_url}: this benchmark measures gunicorn + PostgreSQL")
    fixture = {
        "segments": [{"id": 1, "name": "Customers", "type": "manual"}],
        "customers": [{"email": "ann@example.com", "id": "1001", "attributes": {}, "segments": [1]}],
    }
    with (
        tempfile.TemporaryDirectory(prefix="same-person-") as workdir,
        fresh_database(server_url, "wpfusion_bench_same" + os.environ.get("TEST_DB_SUFFIX", "")) as database_url,
    ):
        workdir = Path(workdir)
        processes = Processes(workdir)
        try:
            emulator = start_emulator(processes)
            requests.post(f"{emulator}/_emulator/reset", json={"fixture": fixture}, timeout=10).raise_for_status()
            env = production_env(workdir, database_url, emulator)
            manage(env, "migrate", "--noinput")
            manage(env, "collectstatic", "--noinput")
            key = access_key(env)
            site = start_gunicorn(processes, env, **WEB)
            requests.post(
                f"{site}/?wpf_action=add&access_key={key}", json={"email": "ann@example.com"}, headers=VIA_PROXY
            ).raise_for_status()
            processes.stop("gunicorn")
            same_person = measure_same_person(workdir, env, database_url, key, emulator)
        finally:
            processes.stop_all()
    print_same_person(same_person)


if __name__ == "__main__":
    main()
