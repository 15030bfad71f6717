"""bench/accept.py's throughput half: the servers it starts (the two DRF floors and the site), the endpoints it loads
and issue 20's targets for them, measured in rounds taken in turn. bench/accept_profile.py creates the floor's table
with it too."""

import json
import sqlite3
from pathlib import Path

import psycopg
from cpu_use import postgres_seconds, tree_seconds
from load import drive
from production_site import Processes, start_gunicorn

# Every gunicorn bench/accept.py starts, the open loop's site too: one shape, so that their figures compare.
WEB = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "8", "GUNICORN_ACCESS_LOG": ""}
CONNECTION_MODES = {
    "pool": {"DATABASE_POOL": "true"},
    "persistent": {"DATABASE_POOL": "false", "CONN_MAX_AGE": "60"},
    "per-request": {"DATABASE_POOL": "false", "CONN_MAX_AGE": "0"},
}


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
                meter = _meter(processes.running[server].pid, kind)
                figures = drive(
                    servers[server] + path, body, arguments, f"{kind}-{server}-{round_number}", workdir, meter
                )
                results[label].append(figures)
                print(f"  round {round_number}: {label:<40} {figures['rate']:7.0f} req/s", flush=True)
    finally:
        processes.stop_all()
    return results


def _meter(gunicorn_pid: int, kind: str):
    """CPU seconds so far of the endpoint's gunicorn (master and workers) and, on PostgreSQL, of the database
    server: what one request costs each, beside the throughput (SQLite's work is in the web processes)."""

    def meter() -> dict[str, float]:
        used = {"web": tree_seconds(gunicorn_pid)}
        if kind == "postgres":
            used["database"] = postgres_seconds()
        return used

    return meter
