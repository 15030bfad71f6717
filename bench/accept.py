"""Accept-path benchmark: how fast gunicorn + PostgreSQL answer webhooks, with the production settings.

    .venv/bin/python bench/accept.py [--only connections|same-person] [postgres://postgres@127.0.0.1:5432/postgres]
    (or `make bench-accept`)

On a fresh PostgreSQL database, gunicorn (gunicorn.conf.py: 2 processes x 8 threads) is started once per database
connection mode — Django's connection pool (the default), persistent connections (DATABASE_POOL=false,
CONN_MAX_AGE=60), a new connection per request (DATABASE_POOL=false, CONN_MAX_AGE=0) — and `test` webhooks are sent
for a fixed time from 16 keep-alive connections (wrk when it is installed — `apt-get install wrk` — else Python
clients); each mode runs three times, interleaved, and the median counts. Then, with Customer.io answering in
0.5 s, six `update_tags` webhooks for one person are sent at once to sync (one thread) and to gthread workers: how
far apart the site received them, how long a /healthz probe sent meanwhile waited, and how long the answers took.
Figures, not pass/fail.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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

CLIENTS = 16
WARM_UP = 2.0  # seconds
DURATION = 8.0  # seconds per measurement
ROUNDS = 3  # each mode, interleaved: a busy machine's noise hits every mode alike
WEB = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "8", "GUNICORN_ACCESS_LOG": ""}
MODES = [
    ("pool (default)", {"DATABASE_POOL": "true"}),
    ("persistent (CONN_MAX_AGE=60)", {"DATABASE_POOL": "false", "CONN_MAX_AGE": "60"}),
    ("new connection per request", {"DATABASE_POOL": "false", "CONN_MAX_AGE": "0"}),
]
SAME_PERSON = 6
CUSTOMERIO_LATENCY_MS = 500


def load(url: str, path: str, seconds: float) -> list[float]:
    """POST `path` from CLIENTS keep-alive connections for `seconds`; the latencies of the 200 answers."""
    host, port = url.removeprefix("http://").split(":")
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    errors = []
    headers = {**VIA_PROXY, "Content-Type": "application/json"}

    def client():
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            connection.request("POST", path, body=b"{}", headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                mine.append(time.perf_counter() - started)
            else:
                errors.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.close()
        latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"    ({len(errors)} answers other than 200: {sorted(set(errors))})")
    return latencies


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["Host"] = "127.0.0.1"
"""


def load_with_wrk(url: str, path: str, seconds: float, workdir: Path) -> tuple[float, float, float]:
    """wrk (lighter than Python clients on a small machine): requests/s, p50 and p99 in ms."""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    command = ["wrk", "-t2", f"-c{CLIENTS}", f"-d{seconds:.0f}s", "--latency", "-s", str(script), url + path]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        print(f"    ({non_2xx.group(1)} answers other than 200)")

    def latency(label):
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rate, latency("50"), latency("99")


def database_connections(database_url: str, name: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
        ).fetchone()
    return row[0]


def measure_connections(workdir: Path, env: dict, database_url: str, key: str) -> dict[str, list[tuple]]:
    path = f"/?wpf_action=test&access_key={key}"
    results: dict[str, list[tuple]] = {label: [] for label, _ in MODES}
    database_name = database_url.rsplit("/", 1)[1]
    for round_number in range(1, ROUNDS + 1):
        for label, variables in MODES:
            processes = Processes(workdir)
            try:
                site = start_gunicorn(processes, env, **WEB, **variables)
                load(site, path, WARM_UP)
                if shutil.which("wrk"):
                    rate, p50, p99 = load_with_wrk(site, path, DURATION, workdir)
                else:
                    latencies = load(site, path, DURATION)
                    rate = len(latencies) / DURATION
                    p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99) * 1000
                connections = database_connections(database_url, database_name)
            finally:
                processes.stop_all()
            results[label].append((rate, p50, p99, connections))
            print(f"  round {round_number}: {label:<30} {rate:7.0f} webhooks/s")
    return results


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


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server_url", nargs="?", default=DEFAULT_POSTGRES, help="a PostgreSQL server (its database)")
    parser.add_argument("--only", choices=["connections", "same-person"], help="run one of the two parts")
    arguments = parser.parse_args()
    server_url = arguments.server_url
    if not postgres_answers(server_url):
        raise SystemExit(f"no PostgreSQL at {server_url}: this benchmark measures gunicorn + PostgreSQL")
    fixture = {
        "segments": [{"id": 1, "name": "Customers", "type": "manual"}],
        "customers": [{"email": "ann@example.com", "id": "1001", "attributes": {}, "segments": [1]}],
    }
    with (
        tempfile.TemporaryDirectory(prefix="accept-") as workdir,
        fresh_database(server_url, "wpfusion_bench_accept" + os.environ.get("TEST_DB_SUFFIX", "")) as database_url,
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
            print(
                f"`test` webhooks on gunicorn (2 processes x 8 threads, gthread) + PostgreSQL, production settings; "
                f"{CLIENTS} keep-alive connections ({'wrk' if shutil.which('wrk') else 'Python clients'}), "
                f"{DURATION:.0f} s per run after {WARM_UP:.0f} s warm-up"
            )
            connections = same_person = {}
            if arguments.only != "same-person":
                connections = measure_connections(workdir, env, database_url, key)
            if arguments.only != "connections":
                site = start_gunicorn(processes, env, **WEB)
                requests.post(
                    f"{site}/?wpf_action=add&access_key={key}", json={"email": "ann@example.com"}, headers=VIA_PROXY
                ).raise_for_status()
                processes.stop("gunicorn")
                same_person = measure_same_person(workdir, env, database_url, key, emulator)
        finally:
            processes.stop_all()

    if connections:
        print_connections(connections)
    if same_person:
        print_same_person(same_person)


def print_connections(connections):
    print(
        f"\n{'database connections':<32}{'webhooks/s (median)':>20}{'runs':>16}{'p50':>9}{'p99':>9}{'connections':>13}"
    )
    for label, runs in connections.items():
        rates = " / ".join(f"{run[0]:.0f}" for run in runs)
        rate = statistics.median(run[0] for run in runs)
        p50 = statistics.median(run[1] for run in runs)
        p99 = statistics.median(run[2] for run in runs)
        print(f"{label:<32}{rate:>20.0f}{rates:>16}{p50:>7.1f}ms{p99:>7.0f}ms{runs[-1][3]:>13}")
    pooled = statistics.median(run[0] for run in connections[MODES[0][0]])
    fresh = statistics.median(run[0] for run in connections[MODES[2][0]])
    print(f"pool vs a new connection per request: {pooled / fresh:.2f} x the throughput (medians)")


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


if __name__ == "__main__":
    main()
