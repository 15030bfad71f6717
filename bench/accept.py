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
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from accept_open_loop import measure_open_loop  # noqa: E402
from accept_report import print_open_loop, print_throughput  # noqa: E402
from accept_throughput import (  # noqa: E402
    CONNECTION_MODES,
    ENDPOINT_ASYNC,
    FULL_FLOOR,
    MINIMAL_FLOOR,
    TARGETS,
    create_floor_table,
    measure_throughput,
)
from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    ROOT,
    Processes,
    access_key,
    fresh_database,
    manage,
    postgres_answers,
    production_env,
    start_emulator,
)


def prepared_database(kind: str, workdir: Path, postgres: str, stack):
    if kind == "postgres":
        suffix = os.environ.get("TEST_DB_SUFFIX", "")
        return stack.enter_context(fresh_database(postgres, f"wpfusion_bench_accept{suffix}"))
    return f"sqlite:///{workdir / 'bench.sqlite3'}"


def main():
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
