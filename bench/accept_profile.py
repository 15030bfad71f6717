"""Where a webhook request's time goes beyond the minimal floor: per middleware, per step, in one process.

    .venv/bin/python bench/accept_profile.py [--requests 2000] [--batch 100] [--warm-up 200] [--profiled 1000]
        [--top 12] [--skip-cprofile] [--postgres postgres://postgres@127.0.0.1:5432/postgres]
    (about a minute; PostgreSQL on 127.0.0.1:5432 as for bench/accept.py)

A fresh PostgreSQL database is migrated (and the static files collected) with the production settings, as
bench/accept.py does, and the WSGI application is then built in this process — Django's WSGIHandler, the site's
MIDDLEWARE, ROOT_URLCONF — and called with raw WSGI environs, as gunicorn calls it (one thread: GIL contention and
gunicorn's own HTTP work are not in these figures; bench/accept.py measures those under gunicorn). Columns, each
`/min` (only Security and Common middleware, as bench/minimal_floor_settings.py) and `/full` (the site's MIDDLEWARE):

  floor      bench/floor_urls.py's /floor: a bare DRF APIView committing one INSERT (floor/min: the minimal floor);
  async, test, wrong   POST /?wpf_action=update_tags&async=true&access_key=KEY, wpf_action=test, and a wrong key (the
             refused-request throttle off), through the site's URLs — whatever view is mounted at `/` (nothing of the
             webhook's code is imported: the request goes through the URL).

Every column gets the same requests, in batches taken in turn (`--batch` requests of each column, then the next
column: a busy machine's noise falls on every column alike); a figure is the median of the batches' means, in
microseconds per request.

1. Totals: wall time and this thread's CPU time per request, uninstrumented; and how far each is above the minimal
   floor. `full - min` of a webhook column is what all middleware work beyond Security and Common costs it.
2. Exclusive time per step (instrumented: each middleware class wrapped, its own __call__ and hooks without what it
   calls, and the handler's steps), wall, so the database steps include their round trip to the server: about what
   cutting each would save. request.GET is a step of its own — parsed once, by whoever asks first
   (AccessRuleMiddleware's `never_locked(when=...)` test, or the view) — so no layer is charged for a parse that,
   without it, the next one would do anyway.
3. cProfile (unless --skip-cprofile): cumulative time per request of named functions (URL resolving, request.GET,
   the site settings, statements, JSON, DRF's request and response ...) and each webhook column's top functions by
   own time. cProfile inflates small functions: read it for where, not for how much.

Figures side by side, not pass/fail.
"""

import argparse
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from accept_profile_clock import clock_leak, short_name  # noqa: E402
from accept_profile_columns import columns, measure_steps, measure_totals  # noqa: E402
from accept_profile_cprofile import print_profile, profile  # noqa: E402
from accept_profile_report import print_steps, print_totals  # noqa: E402
from accept_throughput import create_floor_table  # noqa: E402
from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    access_key,
    fresh_database,
    manage,
    postgres_answers,
    production_env,
)

NOWHERE = "http://127.0.0.1:9"  # Customer.io: none of the profiled requests calls it


def quiet_logging() -> io.StringIO:
    """Log lines are still formatted and filtered (that cost is part of a request), but written to memory."""
    sink = io.StringIO()
    for name in ("", "django", "django.server", "axes"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
    return sink


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per column and pass (default 2000)")
    parser.add_argument("--batch", type=int, default=100, help="requests of one column before the next (default 100)")
    parser.add_argument("--warm-up", type=int, default=200, help="requests per column before measuring")
    parser.add_argument("--profiled", type=int, default=1000, help="requests per column under cProfile (default 1000)")
    parser.add_argument("--top", type=int, default=12, help="functions listed per webhook column (default 12)")
    parser.add_argument("--skip-cprofile", action="store_true")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a PostgreSQL server (its database)")
    arguments = parser.parse_args()
    if not postgres_answers(arguments.postgres):
        raise SystemExit(f"No PostgreSQL at {arguments.postgres}.")

    suffix = os.environ.get("TEST_DB_SUFFIX", "")
    with (
        tempfile.TemporaryDirectory(prefix="accept-profile-") as workdir,
        fresh_database(arguments.postgres, f"wpfusion_bench_profile{suffix}") as database_url,
    ):
        env = production_env(Path(workdir), database_url, NOWHERE, WEBHOOK_REFUSED_PER_MINUTE="0")
        print("Migrating a fresh PostgreSQL database, collecting static files ...", flush=True)
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        create_floor_table(env, "postgres")
        key = access_key(env)

        os.environ.update(env)
        import django

        django.setup()
        log_sink = quiet_logging()
        from django.conf import settings
        from django.db import connection

        print(
            f"In one process: Django's WSGIHandler with the production settings on {connection.vendor} "
            f"(pool: {'pool' in settings.DATABASES['default'].get('OPTIONS', {})}); min = only Security and "
            "Common middleware; full = MIDDLEWARE:\n  " + ", ".join(short_name(path) for path in settings.MIDDLEWARE),
            flush=True,
        )
        all_columns = columns(key)
        for column in all_columns:
            for _ in range(arguments.warm_up):
                column.call(column.plain)
            for _ in range(min(arguments.warm_up, 50)):
                column.call(column.instrumented)
        totals = measure_totals(all_columns, arguments)
        steps = measure_steps(all_columns, arguments)
        leak = clock_leak()
        stats = None if arguments.skip_cprofile else profile(all_columns, arguments)
        connection.close()

    print_totals(all_columns, totals, arguments)
    print_steps(all_columns, steps, leak)
    lines = log_sink.getvalue().count("\n")
    print(f"(log lines written while measuring, all columns: {lines}; the first: {log_sink.getvalue()[:80]!r})")
    if stats:
        print_profile(stats, arguments)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
