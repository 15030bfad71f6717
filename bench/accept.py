"""Accept-path benchmark: the webhook side by side with the minimal DRF floor and the full-settings DRF floor, under
gunicorn with the production settings; then accept latency while the queue drains, measured open-loop.

    .venv/bin/python bench/accept.py [--seconds 5] [--warm-up 2] [--connections 8] [--rounds 3]
        [--databases postgres,sqlite] [--connection-modes] [--skip-throughput] [--skip-open-loop]
        [--postgres postgres://postgres@127.0.0.1:5432/postgres]
    (or `make bench-accept`; a short check: --databases postgres --seconds 3 --warm-up 1 --rounds 1
    --skip-open-loop)

Throughput. For each database — a fresh PostgreSQL database, then a fresh SQLite file (reported separately) — three
gunicorns are started on loopback, all with gunicorn.conf.py (2 processes x 8 threads) and the same environment
(database, pool and connection settings), and these are measured one after the other:
  minimal floor  a bare DRF APIView that parses the JSON body and commits one INSERT into a table of its own before
                 answering (bench/floor_urls.py), in a settings module that is the production one with only
                 SecurityMiddleware and CommonMiddleware (bench/minimal_floor_settings.py): issue 20's reference;
  full floor     the same view under every production setting, all of MIDDLEWARE included
                 (bench/floor_settings.py swaps only the URLs): today's full-settings floor;
  bare           the minimal floor's view without the INSERT (no database): what the database's share is;
  the site       (wpfusion_site.settings), for `update_tags&async=true` (accept, record, enqueue), `test`, a wrong
                 key (the refused-request throttle off: the load comes from one address) and a synchronous
                 `update_tags` for an email with no site user — whatever view is mounted at `/`.
Each gets the same load — wrk when installed (`apt-get install wrk`), else Python clients — from the same number of
keep-alive connections, for the same time after a warm-up; every webhook carries its own x-cio-delivery-id, as
Customer.io's do. `--rounds N` measures them all N times in turn (on a busy machine the noise then hits each alike).
Printed: requests/s, p50, p99 (medians over the rounds), the ratios to the minimal floor (`x minimal`) and to the
full-settings floor (`x full`), each the median of the rounds' ratios, and on PostgreSQL issue 20's targets (on the
`x minimal` ratio: queued accept >= 0.85, test >= 0.9, wrong key >= 2) with whether the run met them.
--connection-modes also measures the two floors and the queued accept on PostgreSQL with persistent connections
(CONN_MAX_AGE=60) and with a new connection per request.
bench/accept_profile.py shows where the webhook's CPU goes beyond the minimal floor (per middleware, in one process).

Open loop. The site (gunicorn, production settings) and one `webhook_worker` run against the Customer.io emulator;
`add&async=true` webhooks for new contacts are sent at a fixed 100 a second (each at its scheduled time, however
long the ones before it take), while the worker drains the queue: it creates each user and, with Return Password on
and a field set, hashes a generated password and writes it back to Customer.io. Latency counts from each request's
scheduled time. Figures, not pass/fail.
"""

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from load import drive, percentile  # noqa: E402
from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    PYTHON,
    ROOT,
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
CONNECTION_MODES = {
    "pool": {"DATABASE_POOL": "true"},
    "persistent": {"DATABASE_POOL": "false", "CONN_MAX_AGE": "60"},
    "per-request": {"DATABASE_POOL": "false", "CONN_MAX_AGE": "0"},
}
OPEN_LOOP_RATE = 100  # webhooks per second
CUSTOMERIO_WAITS = 4.0  # seconds Customer.io waits for an answer
DRAIN_TIMEOUT = 60.0  # seconds the open loop waits for the worker to finish what was sent


# Throughput ---------------------------------------------------------------------------------------------------------


def create_floor_table(env: dict, kind: str) -> None:
    url = env["DATABASE_URL"]
    if kind == "postgres":
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, received_at timestamptz, body text)"
            )
    else:
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute("CREATE TABLE bench_floor (id integer PRIMARY KEY, received_at text, body text)")


MINIMAL_FLOOR = "minimal floor (DRF, 1 INSERT; 2 mw)"
FULL_FLOOR = "full-settings floor (DRF, 1 INSERT)"
ENDPOINT_ASYNC = "update_tags&async=true (accept)"
ENDPOINT_TEST = "test"
ENDPOINT_WRONG_KEY = "wrong key (403)"
# Issue 20's targets, on PostgreSQL: at least this many times the minimal floor's requests/s.
TARGETS = {ENDPOINT_ASYNC: 0.85, ENDPOINT_TEST: 0.9, ENDPOINT_WRONG_KEY: 2.0}
# Which gunicorn serves what: (settings module) per server name.
SERVERS = {
    "minimal": "bench.minimal_floor_settings",
    "full": "bench.floor_settings",
    "site": "wpfusion_site.settings",
}


def endpoints(key: str) -> list[tuple[str, str, str, str]]:
    """(label, which server, path, body) for every measured endpoint, the two floors first."""
    ann = json.dumps({"email": "ann@example.com"})
    return [
        (MINIMAL_FLOOR, "minimal", "/floor", ann),
        (FULL_FLOOR, "full", "/floor", ann),
        ("bare DRF view (no database; 2 mw)", "minimal", "/bare", ann),
        (ENDPOINT_ASYNC, "site", f"/?wpf_action=update_tags&async=true&access_key={key}", ann),
        (ENDPOINT_TEST, "site", f"/?wpf_action=test&access_key={key}", ann),
        (ENDPOINT_WRONG_KEY, "site", "/?wpf_action=test&access_key=not-the-key-0123456789", ann),
        (
            "update_tags, no site user (sync)",
            "site",
            f"/?wpf_action=update_tags&access_key={key}",
            json.dumps({"email": "nobody@example.com"}),
        ),
    ]


def measure_throughput(workdir: Path, env: dict, kind: str, key: str, arguments, only=None) -> dict[str, list]:
    """The servers up (an idle one costs nothing), the endpoints measured one after the other, `--rounds` times
    in turn: a busy machine's noise then falls on every endpoint alike. Every measurement of each endpoint."""
    wanted = [e for e in endpoints(key) if only is None or e[0] in only]
    needed = {server for _, server, _, _ in wanted}
    results: dict[str, list] = {label: [] for label, *_ in wanted}
    processes = Processes(workdir)
    try:
        servers = {
            server: start_gunicorn(processes, {**env, "DJANGO_SETTINGS_MODULE": module}, name=server, **WEB)
            for server, module in SERVERS.items()
            if server in needed
        }
        for round_number in range(1, arguments.rounds + 1):
            for label, server, path, body in wanted:
                figures = drive(servers[server] + path, body, arguments, f"{kind}-{server}-{round_number}", workdir)
                results[label].append(figures)
                print(f"  round {round_number}: {label:<40} {figures['rate']:7.0f} req/s", flush=True)
    finally:
        processes.stop_all()
    return results


def print_throughput(title: str, results: dict[str, list], arguments, targets: dict[str, float]) -> None:
    load = "wrk, 2 threads" if shutil.which("wrk") else "Python clients"
    print(f"\n{title}")
    print(
        f"gunicorn {WEB['WEB_CONCURRENCY']} processes x {WEB['GUNICORN_THREADS']} threads (gthread); "
        f"{load}, {arguments.connections} connections, {arguments.seconds:.0f} s after "
        f"{arguments.warm_up:.0f} s warm-up, {arguments.rounds} round(s) in turn: medians"
    )
    print(
        "minimal = the production settings with only Security and Common middleware; full = every production "
        "setting; ratios to each floor's requests/s (the median of the rounds')"
    )
    floors = [[figures["rate"] for figures in results.get(reference, [])] for reference in (MINIMAL_FLOOR, FULL_FLOOR)]
    print(f"{'endpoint':<40}{'req/s':>7}{'p50':>9}{'p99':>9}{'x minimal':>10}{'x full':>8}{'target':>16}  answers")
    for label, runs in results.items():
        rate = statistics.median(run["rate"] for run in runs)
        p50 = statistics.median(run["p50"] for run in runs)
        p99 = statistics.median(run["p99"] for run in runs)
        # The ratio of each round (the same conditions), then their median: to the minimal floor, to the full one.
        ratios = [
            statistics.median(run["rate"] / f for run, f in zip(runs, floor, strict=False)) if floor else None
            for floor in floors
        ]
        shown = [f"{ratio:.2f}" if ratio is not None else "-" for ratio in ratios]
        target = targets.get(label)
        if target is None or ratios[0] is None:
            verdict = ""
        else:
            verdict = f">= {target:g} {'met' if ratios[0] >= target else 'MISSED'}"
        not_2xx, total = sum(run["non_2xx"] for run in runs), sum(run["requests"] for run in runs)
        answers = f"{not_2xx} of {total} not 2xx" if not_2xx else "all 2xx"
        print(f"{label:<40}{rate:>7.0f}{p50:>7.1f}ms{p99:>7.1f}ms{shown[0]:>10}{shown[1]:>8}{verdict:>16}  {answers}")


# Open loop ----------------------------------------------------------------------------------------------------------


def open_loop_fixture(count: int) -> dict:
    return {
        "segments": [{"id": 1, "name": "Customers", "type": "manual"}],
        "customers": [
            {"email": f"open{n}@example.com", "id": f"o{n}", "attributes": {"first_name": f"Open{n}"}, "segments": [1]}
            for n in range(count)
        ],
    }


def send_open_loop(site: str, key: str, rate: int, seconds: float) -> list[tuple[float, int]]:
    """`add&async=true` for open0@, open1@, ... at a fixed rate; (latency from the scheduled time, status) each."""
    host, port = site.removeprefix("http://").split(":")
    count = int(rate * seconds)
    local = threading.local()
    results: list[tuple[float, int] | None] = [None] * count

    def send(n, due):
        headers = {**VIA_PROXY, "Content-Type": "application/json", "X-CIO-Delivery-ID": f"open-{n}"}
        body = json.dumps({"email": f"open{n}@example.com"}).encode()
        status = 0
        # A kept-alive connection the server closed while idle (gunicorn's keepalive is 5 s) fails before any answer:
        # sent again once on a new connection, as HTTP clients do (the same delivery id: never accepted twice).
        for _attempt in range(2):
            reused = getattr(local, "connection", None)
            connection = reused or http.client.HTTPConnection(host, int(port), timeout=60)
            local.connection = connection
            try:
                connection.request("POST", f"/?wpf_action=add&async=true&access_key={key}", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                local.connection = None
                if reused is None:
                    break
            except OSError:
                connection.close()
                local.connection = None
                break
        results[n] = (time.perf_counter() - due, status)

    start = time.perf_counter() + 0.2
    with ThreadPoolExecutor(max_workers=128) as pool:
        for n in range(count):
            due = start + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pool.submit(send, n, due)
    return [result for result in results if result is not None]


def sql(env: dict, kind: str, *statements: str):
    """Run statements on the benchmark's database; the last one's first row."""
    if kind == "postgres":
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
            for statement in statements:
                cursor = connection.execute(statement)
            return cursor.fetchone() if cursor.description else None
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"), isolation_level=None) as connection:
        for statement in statements:
            cursor = connection.execute(statement)
        return cursor.fetchone()


def empty_queue(env: dict, kind: str) -> None:
    sql(env, kind, "DELETE FROM webhooks_webhookdelivery", "DELETE FROM django_tasks_database_dbtaskresult")


def queue_state(env: dict, kind: str) -> tuple[int, int]:
    """(deliveries finished, deliveries still waiting or processing)."""
    row = sql(
        env,
        kind,
        "SELECT sum(CASE WHEN status IN ('succeeded', 'skipped', 'failed') THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status IN ('queued', 'retrying', 'processing') THEN 1 ELSE 0 END) FROM webhooks_webhookdelivery",
    )
    return int(row[0] or 0), int(row[1] or 0)


def measure_open_loop(workdir: Path, env: dict, kind: str, key: str, emulator: str, seconds: float) -> dict:
    count = int(OPEN_LOOP_RATE * seconds)
    requests.post(f"{emulator}/_emulator/reset", json={"fixture": open_loop_fixture(count)}, timeout=30)
    manage(
        env,
        "shell",
        "-c",
        "from settings_app.models import WebhookSettings; from settings_app import freshness; "
        "WebhookSettings.load(); WebhookSettings.objects.update(return_password=True, "
        "return_password_field='wp_password'); freshness.changed('webhook_settings')",
    )
    empty_queue(env, kind)  # what the throughput runs left queued is not this measurement's work
    processes = Processes(workdir)
    try:
        site = start_gunicorn(processes, env, **WEB)
        processes.start("worker", [PYTHON, "manage.py", "webhook_worker", "--interval", "0.2"], env)
        time.sleep(1.0)
        sent = send_open_loop(site, key, OPEN_LOOP_RATE, seconds)
        finished, waiting = queue_state(env, kind)
        drain_started = time.monotonic()
        while waiting and time.monotonic() - drain_started < DRAIN_TIMEOUT:
            time.sleep(0.5)
            finished, waiting = queue_state(env, kind)
        drained = time.monotonic() - drain_started
    finally:
        processes.stop_all()
    latencies = [latency for latency, _ in sent]
    return {
        "sent": len(sent),
        "accepted": sum(1 for _, status in sent if status == 200),
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "max": max(latencies) * 1000,
        "late": sum(1 for latency in latencies if latency > CUSTOMERIO_WAITS),
        "finished": finished,
        "waiting": waiting,
        "drained": drained,
    }


def print_open_loop(results: dict[str, dict], seconds: float) -> None:
    print(
        f"\nOpen loop: `add&async=true` for new contacts at {OPEN_LOOP_RATE}/s for {seconds:.0f} s while a "
        f"webhook_worker drains the queue (Return Password on, field set); latency from each scheduled send time"
    )
    print(f"{'database':<12}{'accepted':>12}{'p50':>8}{'p99':>10}{'max':>10}{'over 4 s':>10}  the worker")
    for kind, r in results.items():
        drained = f"drained {r['drained']:.0f} s after the last send" if not r["waiting"] else f"{r['waiting']} left"
        print(
            f"{kind:<12}{r['accepted']:>5} of {r['sent']:<5}{r['p50']:>6.0f}ms{r['p99']:>8.0f}ms{r['max']:>8.0f}ms"
            f"{r['late']:>10}  {r['finished']} processed, {drained}"
        )


# Main ---------------------------------------------------------------------------------------------------------------


def prepared_database(kind: str, workdir: Path, postgres: str, stack):
    if kind == "postgres":
        suffix = os.environ.get("TEST_DB_SUFFIX", "")
        return stack.enter_context(fresh_database(postgres, f"wpfusion_bench_accept{suffix}"))
    return f"sqlite:///{workdir / 'bench.sqlite3'}"


def main():
    import contextlib

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per endpoint (default 5)")
    parser.add_argument("--warm-up", type=float, default=2.0, help="seconds of load before each measurement")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every endpoint this many times, in turn (default 3: a busy moment then falls on one round)",
    )
    parser.add_argument("--databases", default="postgres,sqlite", help="postgres, sqlite or both (default)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a PostgreSQL server (its database)")
    parser.add_argument("--open-loop-seconds", type=float, default=10.0, help="seconds of open-loop sending")
    parser.add_argument("--connection-modes", action="store_true", help="PostgreSQL: pool, persistent, per-request")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-open-loop", action="store_true")
    arguments = parser.parse_args()
    kinds = [kind.strip() for kind in arguments.databases.split(",") if kind.strip()]
    if "postgres" in kinds and not postgres_answers(arguments.postgres):
        print(f"(no PostgreSQL at {arguments.postgres}: SQLite only)")
        kinds.remove("postgres")

    tables, open_loop = [], {}
    with tempfile.TemporaryDirectory(prefix="accept-") as workdir, contextlib.ExitStack() as stack:
        workdir = Path(workdir)
        processes = Processes(workdir)
        try:
            emulator = start_emulator(processes)
            for kind in kinds:
                database_url = prepared_database(kind, workdir, arguments.postgres, stack)
                env = production_env(workdir, database_url, emulator, WEBHOOK_REFUSED_PER_MINUTE="0")
                manage(env, "migrate", "--noinput")
                manage(env, "collectstatic", "--noinput")
                create_floor_table(env, kind)
                key = access_key(env)
                name = "PostgreSQL" if kind == "postgres" else "SQLite"
                if not arguments.skip_throughput:
                    modes = ["pool"] if kind == "sqlite" or not arguments.connection_modes else list(CONNECTION_MODES)
                    for mode in modes:
                        print(f"{name}, {mode if kind == 'postgres' else 'one connection per thread'}:", flush=True)
                        only = None if mode == "pool" else {MINIMAL_FLOOR, FULL_FLOOR, ENDPOINT_ASYNC}
                        results = measure_throughput(
                            workdir, {**env, **CONNECTION_MODES[mode]}, kind, key, arguments, only
                        )
                        connections = {
                            "pool": "Django's connection pool (the production default)",
                            "persistent": "persistent connections (DATABASE_POOL=false, CONN_MAX_AGE=60)",
                            "per-request": "a new connection per request (DATABASE_POOL=false, CONN_MAX_AGE=0)",
                        }[mode]
                        title = f"{name} (fresh database; {connections if kind == 'postgres' else 'WAL'})"
                        tables.append((title, results, TARGETS if kind == "postgres" else {}))
                if not arguments.skip_open_loop:
                    print(f"{name}: open loop ...", flush=True)
                    open_loop[name] = measure_open_loop(workdir, env, kind, key, emulator, arguments.open_loop_seconds)
        finally:
            processes.stop_all()

    for title, results, targets in tables:
        print_throughput(title, results, arguments, targets)
    if open_loop:
        print_open_loop(open_loop, arguments.open_loop_seconds)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
