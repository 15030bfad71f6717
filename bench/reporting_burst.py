"""Reporting webhook burst: 10,000 signed message events sent at once to POST /webhooks/customerio/reporting/, beside
the accept benchmark's two durable floors (bench/accept.py: a DRF view that commits one INSERT) taking the same
burst, under gunicorn with the production settings; then one webhook_worker processing the burst.

    .venv/bin/python bench/reporting_burst.py [--events 10000] [--warm-up 1000] [--connections 8] [--rounds 3]
        [--databases postgres,sqlite] [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--skip-worker]

For each database (a fresh PostgreSQL database, then a fresh SQLite file) three gunicorns are started as
bench/accept.py starts them (gunicorn.conf.py, 2 processes x 8 threads, the same environment): the minimal floor, the
full-settings floor and the site (CUSTOMERIO_REPORTING_SIGNING_KEYS set). Each round, each endpoint gets a burst of
--events requests from --connections keep-alive connections, every request built and, for the site, signed before
the burst starts (each event its own event_id, so each is a new row), right after a --warm-up burst of the same kind
(the gunicorn workers' first requests import and compile what the rest reuse); the figure is events over the
measured burst's wall time. The senders are light Python threads over plain sockets (wrk cannot sign, and its rate
is over a fixed time, not a burst). The target (issue 24): the site accepts at least 0.8 x the minimal floor's rate.
After the rounds one `webhook_worker --batch` processes what the site stored (no user and no reaction: linking by
email and cio_id and the unprocessed index only), timed.
"""

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from accept_open_loop import sql  # noqa: E402
from accept_throughput import FULL_FLOOR, MINIMAL_FLOOR, SERVERS, WEB, create_floor_table  # noqa: E402
from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    PYTHON,
    ROOT,
    Processes,
    fresh_database,
    manage,
    postgres_answers,
    production_env,
    start_gunicorn,
)

SIGNING_KEY = "bench-reporting-signing-key-5c1e9a"
REPORTING = "reporting webhook (signed, 1 INSERT)"
TARGET = 0.8
ENDPOINTS = [(MINIMAL_FLOOR, "minimal", "/floor"), (FULL_FLOOR, "full", "/floor"), (REPORTING, "site", "/reporting")]
PATHS = {"/floor": "/floor", "/reporting": "/webhooks/customerio/reporting/"}


def event_body(run: str, n: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"{run}-{n:06d}",
            "object_type": "email",
            "metric": ("sent", "delivered", "opened", "clicked")[n % 4],
            "timestamp": int(time.time()),
            "data": {
                "identifiers": {"id": f"p{n}", "email": f"p{n}@example.com", "cio_id": f"c{n}"},
                "customer_id": f"p{n}",
                "recipient": f"p{n}@example.com",
                "delivery_id": f"d-{run}-{n}",
                "campaign_id": 12,
                "action_id": 36,
                "href": "https://example.com/offer" if n % 4 == 3 else None,
            },
        }
    ).encode()


def built_requests(path: str, run: str, count: int, sign: bool) -> list[bytes]:
    """Every request of a burst, ready to go on the wire (the proxy's headers, as bench/accept.py sends them)."""
    built = []
    for n in range(count):
        body = event_body(run, n)
        headers = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "X-Forwarded-Proto: https"]
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        if sign:
            timestamp = str(int(time.time()))
            mac = hmac.new(SIGNING_KEY.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
            headers += [f"X-CIO-Timestamp: {timestamp}", f"X-CIO-Signature: {mac.hexdigest()}"]
        built.append(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
    return built


def read_answer(stream) -> int:
    """One HTTP/1.1 answer off a keep-alive connection: its status (the body read and dropped)."""
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    stream.read(length)
    return status


def burst(url: str, requests: list[bytes], connections: int) -> dict:
    """Send every request, `connections` at a time on keep-alive connections; the burst's figures."""
    host, port = url.removeprefix("http://").split(":")
    shares = [requests[n::connections] for n in range(connections)]
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    ready = threading.Barrier(connections + 1)

    def client(share):
        mine, codes = [], []
        with socket.create_connection((host, int(port))) as sock, sock.makefile("rb") as stream:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ready.wait()
            for request in share:
                started = time.perf_counter()
                sock.sendall(request)
                codes.append(read_answer(stream))
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            statuses.extend(codes)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "seconds": elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "not_2xx": sum(1 for status in statuses if not 200 <= status < 300),
        "sent": len(latencies),
    }


def measure(workdir: Path, env: dict, kind: str, arguments) -> tuple[dict, dict | None]:
    results: dict[str, list] = {label: [] for label, _, _ in ENDPOINTS}
    processes = Processes(workdir)
    try:
        servers = {
            server: start_gunicorn(processes, {**env, "DJANGO_SETTINGS_MODULE": module}, name=server, **WEB)
            for server, module in SERVERS.items()
        }
        for round_number in range(1, arguments.rounds + 1):
            for label, server, path in ENDPOINTS:
                run = f"{kind}-{round_number}-{server}"
                sign = server == "site"
                burst(servers[server], built_requests(PATHS[path], run + "-warm", arguments.warm_up, sign), 8)
                requests = built_requests(PATHS[path], run, arguments.events, sign=sign)
                figures = burst(servers[server], requests, arguments.connections)
                results[label].append(figures)
                print(f"  round {round_number}: {label:<40} {figures['rate']:7.0f} events/s", flush=True)
    finally:
        processes.stop_all()
    stored = int(sql(env, kind, "SELECT count(*) FROM webhooks_messageevent")[0])
    expected = (arguments.events + arguments.warm_up) * arguments.rounds
    print(f"  stored {stored} message events of {expected} sent (warm-ups included)", flush=True)
    worker = None
    if not arguments.skip_worker:
        started = time.monotonic()
        subprocess.run([PYTHON, "manage.py", "webhook_worker", "--batch"], cwd=ROOT, env=env, check=True, timeout=3600)
        waiting = int(sql(env, kind, "SELECT count(*) FROM webhooks_messageevent WHERE processed_at IS NULL")[0])
        worker = {"events": stored, "seconds": time.monotonic() - started, "waiting": waiting}
    return results, worker


def report(title: str, results: dict, worker: dict | None, arguments) -> None:
    print(f"\n{title}")
    print(
        f"gunicorn {WEB['WEB_CONCURRENCY']} processes x {WEB['GUNICORN_THREADS']} threads; bursts of "
        f"{arguments.events:,} events from {arguments.connections} keep-alive connections, {arguments.rounds} "
        "round(s) in turn: medians; ratios to each floor's rate, the median of the rounds'"
    )
    print(f"{'endpoint':<40}{'events/s':>9}{'burst':>8}{'p50':>9}{'p99':>9}{'x minimal':>10}{'x full':>8}  answers")
    floors = [[run["rate"] for run in results[label]] for label in (MINIMAL_FLOOR, FULL_FLOOR)]
    for label, runs in results.items():
        ratios = [statistics.median(run["rate"] / f for run, f in zip(runs, floor, strict=True)) for floor in floors]
        not_2xx, sent = sum(run["not_2xx"] for run in runs), sum(run["sent"] for run in runs)
        print(
            f"{label:<40}{statistics.median(r['rate'] for r in runs):>9.0f}"
            f"{statistics.median(r['seconds'] for r in runs):>7.1f}s"
            f"{statistics.median(r['p50'] for r in runs):>7.1f}ms{statistics.median(r['p99'] for r in runs):>7.1f}ms"
            f"{ratios[0]:>10.2f}{ratios[1]:>8.2f}  {f'{not_2xx} of {sent} not 2xx' if not_2xx else 'all 2xx'}"
        )
    reporting = statistics.median(run["rate"] / floor for run, floor in zip(results[REPORTING], floors[0], strict=True))
    print(
        f"target: the reporting webhook >= {TARGET} x the minimal floor: {'met' if reporting >= TARGET else 'MISSED'}"
    )
    if worker:
        rate = worker["events"] / worker["seconds"]
        left = f", {worker['waiting']} left" if worker["waiting"] else ""
        print(
            f"worker: one webhook_worker --batch processed {worker['events']:,} events in {worker['seconds']:.1f} s "
            f"({rate:.0f}/s, its start included){left}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in each burst (default 10,000)")
    parser.add_argument("--warm-up", type=int, default=1000, help="events sent before each burst (default 1,000)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per endpoint, taken in turn (default 3)")
    parser.add_argument("--databases", default="postgres,sqlite", help="postgres, sqlite or both (default)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a PostgreSQL server (its database)")
    parser.add_argument("--skip-worker", action="store_true", help="do not time the worker's processing")
    arguments = parser.parse_args()
    kinds = [kind.strip() for kind in arguments.databases.split(",") if kind.strip()]
    if "postgres" in kinds and not postgres_answers(arguments.postgres):
        print(f"(no PostgreSQL at {arguments.postgres}: SQLite only)")
        kinds.remove("postgres")
    tables = []
    with tempfile.TemporaryDirectory(prefix="reporting-") as workdir, contextlib.ExitStack() as stack:
        workdir = Path(workdir)
        for kind in kinds:
            if kind == "postgres":
                suffix = os.environ.get("TEST_DB_SUFFIX", "")
                database_url = stack.enter_context(fresh_database(arguments.postgres, f"wpfusion_bench_rep{suffix}"))
            else:
                database_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
            # No Customer.io is called: the worker links events to users (none here) and has no reactions to run.
            env = production_env(
                workdir,
                database_url,
                "http://127.0.0.1:9",
                CUSTOMERIO_REPORTING_SIGNING_KEYS=SIGNING_KEY,
                WEBHOOK_REFUSED_PER_MINUTE="0",
            )
            manage(env, "migrate", "--noinput")
            manage(env, "collectstatic", "--noinput")
            create_floor_table(env, kind)
            name = "PostgreSQL" if kind == "postgres" else "SQLite"
            print(f"{name}:", flush=True)
            results, worker = measure(workdir, env, kind, arguments)
            connections = "Django's connection pool" if kind == "postgres" else "WAL"
            tables.append((f"{name} (fresh database; {connections})", results, worker))
    for title, results, worker in tables:
        report(title, results, worker, arguments)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
