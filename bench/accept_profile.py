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
import contextlib
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import psycopg  # noqa: E402
from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    access_key,
    fresh_database,
    manage,
    postgres_answers,
    production_env,
)

MINIMAL_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
FLOOR_URLS = "bench.floor_urls"
BODY = b'{"email": "ann@example.com"}'
NOWHERE = "http://127.0.0.1:9"  # Customer.io: none of the profiled requests calls it


def short_name(middleware_path: str) -> str:
    return middleware_path.rsplit(".", 1)[1].removesuffix("Middleware")


# Exclusive time -----------------------------------------------------------------------------------------------------


class Clock:
    """A stack of steps; the time between two transitions is charged to the step on top (exclusive time). The clock
    is read twice per transition, so its own bookkeeping falls between two readings and is charged to no step.
    Only the thread that made it is timed (the connection pool's own threads call the same psycopg methods)."""

    def __init__(self):
        self.owner = threading.get_ident()
        self.totals: dict[str, int] = defaultdict(int)
        self.stack: list[str] = []
        self.last = 0

    def enter(self, step: str) -> None:
        now = time.perf_counter_ns()
        if self.stack:
            self.totals[self.stack[-1]] += now - self.last
        self.stack.append(step)
        self.last = time.perf_counter_ns()

    def exit(self) -> None:
        now = time.perf_counter_ns()
        self.totals[self.stack.pop()] += now - self.last
        self.last = time.perf_counter_ns()

    def timed(self, step: str, function):
        def call(*args, **kwargs):
            if threading.get_ident() != self.owner:
                return function(*args, **kwargs)
            self.enter(step)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit()

        call.__wrapped__ = function
        return call

    def take(self) -> dict[str, int]:
        totals, self.totals = dict(self.totals), defaultdict(int)
        return totals


def timed_middleware(step: str, factory, clock: Clock):
    """The middleware class `factory`, its calls charged to `step`: __call__ (process_request, process_response)
    and the hooks the handler calls itself (process_view, process_exception, process_template_response)."""

    class Timed:
        sync_capable = getattr(factory, "sync_capable", True)
        async_capable = False

        def __init__(self, get_response):
            self.inner = factory(get_response)
            for hook in ("process_view", "process_exception", "process_template_response"):
                method = getattr(self.inner, hook, None)
                if method is not None:
                    setattr(self, hook, clock.timed(step, method))

        def __call__(self, request):
            clock.enter(step)
            try:
                return self.inner(request)
            finally:
                clock.exit()

    return Timed


# Steps outside the middleware, each wrapped where it is one call.
RESOLVE = "URL resolving"
QUERY = "request.GET (query string parse)"
VIEW = "view (beside the steps below)"
LOG_4XX = "django.request log line (4xx)"
EXECUTE = "db: statements (psycopg, round trip)"
COMMIT = "db: COMMIT (psycopg, round trip)"
POOL = "db: pool checkout/return"
CLOSE = "response close (request_finished)"
HANDLER = "WSGIHandler (request, signals, rest)"
STEPS_AFTER_MIDDLEWARE = [QUERY, RESOLVE, VIEW, EXECUTE, COMMIT, POOL, LOG_4XX, CLOSE, HANDLER]


@contextlib.contextmanager
def query_step(clock: Clock):
    """request.GET parsed under its own step, whoever asks for it first (a middleware's test or the view): the
    parse then counts once, not against whichever layer happened to read it before the others."""
    from django.core.handlers.wsgi import WSGIRequest
    from django.utils.functional import cached_property

    original = WSGIRequest.__dict__["GET"]
    timed = cached_property(clock.timed(QUERY, original.func))
    timed.__set_name__(WSGIRequest, "GET")
    WSGIRequest.GET = timed
    try:
        yield
    finally:
        WSGIRequest.GET = original


@contextlib.contextmanager
def database_steps(clock: Clock):
    """psycopg's execute and commit, and the pool's checkout and return, charged to their own steps."""
    import psycopg_pool

    patched = [
        (psycopg.Cursor, "execute", EXECUTE),
        (psycopg.Cursor, "executemany", EXECUTE),
        (psycopg.Connection, "commit", COMMIT),
        (psycopg_pool.ConnectionPool, "getconn", POOL),
        (psycopg_pool.ConnectionPool, "putconn", POOL),
    ]
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in patched]
    for owner, name, step in patched:
        setattr(owner, name, clock.timed(step, owner.__dict__[name]))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


# The application ----------------------------------------------------------------------------------------------------


def build_handler(middleware: list[str], urlconf: str, clock: Clock | None):
    """Django's WSGIHandler with this MIDDLEWARE and ROOT_URLCONF (the rest: the production settings); with `clock`,
    every middleware and step timed."""
    from django.core.handlers import base
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    class Handler(WSGIHandler):
        def get_response(self, request):
            request.urlconf = urlconf  # resolved with this URLconf, as ROOT_URLCONF would be
            return super().get_response(request)

        if clock is not None:

            def __call__(self, environ, start_response):
                clock.enter(HANDLER)
                try:
                    return super().__call__(environ, start_response)
                finally:
                    clock.exit()

            def resolve_request(self, request):
                clock.enter(RESOLVE)
                try:
                    return super().resolve_request(request)
                finally:
                    clock.exit()

            def _get_response(self, request):
                clock.enter(VIEW)
                try:
                    return super()._get_response(request)
                finally:
                    clock.exit()

    real_import_string = base.import_string

    def import_string(path):
        found = real_import_string(path)
        return timed_middleware(short_name(path), found, clock) if clock is not None and path in middleware else found

    base.import_string = import_string
    try:
        with override_settings(MIDDLEWARE=middleware):
            return Handler()
    finally:
        base.import_string = real_import_string


class Column:
    def __init__(self, name: str, middleware: list[str], urlconf: str, target: str):
        self.name = name
        self.middleware = middleware
        self.plain = build_handler(middleware, urlconf, None)
        self.clock = Clock()
        self.instrumented = build_handler(middleware, urlconf, self.clock)
        self.path, _, self.query = target.partition("?")
        self.sent = 0
        self.statuses: dict[int, int] = defaultdict(int)

    def environ(self) -> dict:
        self.sent += 1
        return {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": self.path,
            "QUERY_STRING": self.query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "40000",
            # What wrk sends in bench/accept.py (through the TLS proxy: X-Forwarded-Proto).
            "HTTP_HOST": "127.0.0.1",
            "HTTP_X_FORWARDED_PROTO": "https",
            "HTTP_X_CIO_DELIVERY_ID": f"profile-{self.name}-{time.monotonic_ns()}-{self.sent}",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": io.BytesIO(BODY),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }

    def call(self, handler, clock: Clock | None = None) -> None:
        answer = []
        response = handler(self.environ(), lambda status, headers, exc_info=None: answer.append(status))
        for _chunk in response:
            pass
        if clock is not None:
            clock.enter(CLOSE)
        try:
            response.close()  # gunicorn closes the response: request_finished (the connection goes back to the pool)
        finally:
            if clock is not None:
                clock.exit()
        self.statuses[int(answer[0].split()[0])] += 1


def columns(key: str) -> list[Column]:
    site = "wpfusion_site.urls"
    from django.conf import settings

    full = list(settings.MIDDLEWARE)
    webhook = {
        "async": f"/?wpf_action=update_tags&async=true&access_key={key}",
        "test": f"/?wpf_action=test&access_key={key}",
        "wrong": "/?wpf_action=test&access_key=not-the-key-0123456789",
    }
    made = [
        Column("floor/min", MINIMAL_MIDDLEWARE, FLOOR_URLS, "/floor"),
        Column("floor/full", full, FLOOR_URLS, "/floor"),
    ]
    for name, target in webhook.items():
        made.append(Column(f"{name}/full", full, site, target))
        made.append(Column(f"{name}/min", MINIMAL_MIDDLEWARE, site, target))
    return made


# Measuring ----------------------------------------------------------------------------------------------------------


def in_turn(all_columns: list[Column], requests: int, batch: int, run_batch) -> None:
    for _ in range(max(1, requests // batch)):
        for column in all_columns:
            run_batch(column)


def measure_totals(all_columns: list[Column], arguments) -> dict[str, dict[str, float]]:
    """Median over the batches of the mean wall and CPU (this thread's) microseconds per request, uninstrumented."""
    walls: dict[str, list[float]] = defaultdict(list)
    cpus: dict[str, list[float]] = defaultdict(list)

    def run_batch(column):
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(arguments.batch):
            column.call(column.plain)
        walls[column.name].append((time.perf_counter_ns() - wall) / arguments.batch / 1000)
        cpus[column.name].append((time.thread_time_ns() - cpu) / arguments.batch / 1000)

    in_turn(all_columns, arguments.requests, arguments.batch, run_batch)
    return {
        column.name: {"wall": statistics.median(walls[column.name]), "cpu": statistics.median(cpus[column.name])}
        for column in all_columns
    }


def measure_steps(all_columns: list[Column], arguments) -> dict[str, dict[str, float]]:
    """Median over the batches of each step's mean exclusive microseconds per request."""
    from django.core.handlers import base

    per_batch: dict[str, dict[str, list[float]]] = {column.name: defaultdict(list) for column in all_columns}
    real_log_response = base.log_response

    def run_batch(column):
        clock = column.clock
        clock.take()
        base.log_response = clock.timed(LOG_4XX, real_log_response)
        try:
            with database_steps(clock), query_step(clock):
                for _ in range(arguments.batch):
                    column.call(column.instrumented, clock)
        finally:
            base.log_response = real_log_response
        totals = clock.take()
        for step in set(totals) | set(per_batch[column.name]):
            per_batch[column.name][step].append(totals.get(step, 0) / arguments.batch / 1000)

    in_turn(all_columns, arguments.requests, arguments.batch, run_batch)
    return {
        name: {step: statistics.median(values) for step, values in steps.items()} for name, steps in per_batch.items()
    }


def clock_leak(samples: int = 20000) -> float:
    """Microseconds an empty step is charged (half a clock reading each side): the floor of every figure below."""
    clock = Clock()
    clock.enter("outer")
    for _ in range(samples):
        clock.enter("empty")
        clock.exit()
    clock.exit()
    return clock.totals["empty"] / samples / 1000


# cProfile -----------------------------------------------------------------------------------------------------------

# (label, dotted name): the functions whose cumulative time per request is shown; a name that does not resolve (the
# view is being rewritten) is left out.
NAMED = [
    ("WSGIRequest() (environ -> request)", "django.core.handlers.wsgi.WSGIRequest.__init__"),
    ("URL resolving", "django.core.handlers.base.BaseHandler.resolve_request"),
    ("request.GET (QueryDict)", "django.core.handlers.wsgi.WSGIRequest.GET"),
    ("WebhookSettings.cached()", "settings_app.models.WebhookSettings.cached"),
    ("freshness.Memo.get (config reloads)", "settings_app.freshness.Memo.get"),
    ("DRF APIView.dispatch", "rest_framework.views.APIView.dispatch"),
    ("DRF initialize_request", "rest_framework.views.APIView.initialize_request"),
    ("DRF initial (auth, perms, throttles)", "rest_framework.views.APIView.initial"),
    ("DRF request.data (parse)", "rest_framework.request.Request.data"),
    ("DRF finalize_response", "rest_framework.views.APIView.finalize_response"),
    ("DRF JSONRenderer.render", "rest_framework.renderers.JSONRenderer.render"),
    ("json.loads", "json.loads"),
    ("json.dumps", "json.dumps"),
    ("transaction.atomic enter", "django.db.transaction.Atomic.__enter__"),
    ("transaction.atomic exit (COMMIT)", "django.db.transaction.Atomic.__exit__"),
    ("Django CursorWrapper.execute", "django.db.backends.utils.CursorWrapper.execute"),
    ("psycopg Cursor.execute", "psycopg.Cursor.execute"),
    ("psycopg Connection.commit", "psycopg.Connection.commit"),
    ("ensure_connection (pool checkout)", "django.db.backends.base.base.BaseDatabaseWrapper.ensure_connection"),
    ("close_old_connections (signals)", "django.db.close_old_connections"),
    ("django.request log line", "django.utils.log.log_response"),
    ("messages: default_storage()", "django.contrib.messages.storage.default_storage"),
    ("sessions: process_response", "django.contrib.sessions.middleware.SessionMiddleware.process_response"),
    ("csrf: process_view", "django.middleware.csrf.CsrfViewMiddleware.process_view"),
    ("access rules: is_never_locked", "users.access.rules.is_never_locked"),
]


def code_key(dotted: str):
    """(file, first line, name) of a function, as pstats keys it; None when it does not resolve."""
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                found = (
                    found.__dict__[attribute]
                    if isinstance(found, type) and attribute in found.__dict__
                    else getattr(found, attribute)
                )
        except (AttributeError, KeyError):
            return None
        found = getattr(found, "__func__", found)  # a classmethod: its function
        found = getattr(found, "fget", found)  # a property: its getter
        found = getattr(found, "func", found)  # a cached_property: its function
        code = getattr(found, "__code__", None)
        return (code.co_filename, code.co_firstlineno, code.co_name) if code else None
    return None


def profile(all_columns: list[Column], arguments) -> dict[str, pstats.Stats]:
    stats = {}
    for column in all_columns:
        for _ in range(min(arguments.warm_up, 50)):
            column.call(column.plain)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(arguments.profiled):
            column.call(column.plain)
        profiler.disable()
        stats[column.name] = pstats.Stats(profiler)
    return stats


def where(key) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        with contextlib.suppress(ValueError):
            filename = str(Path(filename).relative_to(ROOT))
    return f"{filename}:{line}({name})"


def print_profile(stats: dict[str, pstats.Stats], arguments) -> None:
    names = list(stats)
    per_request = 1e6 / arguments.profiled
    print(f"\n3. cProfile, {arguments.profiled} requests a column: cumulative us per request of named functions")
    print(f"{'':<40}" + "".join(f"{name:>11}" for name in names))
    for label, dotted in NAMED:
        key = code_key(dotted)
        if key is None:
            continue
        cells = []
        for name in names:
            entry = stats[name].stats.get(key)
            cells.append(f"{entry[3] * per_request:>11.1f}" if entry else f"{'-':>11}")
        if any(cell.strip() != "-" for cell in cells):
            print(f"{label:<40}" + "".join(cells))
    for name in names:
        if "floor" in name or name.endswith("/min"):
            continue
        entries = sorted(stats[name].stats.items(), key=lambda item: item[1][2], reverse=True)[: arguments.top]
        print(f"\n{name}: top {arguments.top} by own time (us per request own / cumulative, calls per request)")
        for key, (_, calls, own, cumulative, _) in entries:
            print(
                f"  {own * per_request:7.1f} {cumulative * per_request:8.1f} {calls / arguments.profiled:6.1f}  "
                f"{where(key)}"
            )


# Printing -----------------------------------------------------------------------------------------------------------


def print_totals(all_columns: list[Column], totals: dict, arguments) -> None:
    names = [column.name for column in all_columns]
    print(
        f"\n1. us per request, uninstrumented ({arguments.requests} requests a column in batches of {arguments.batch}"
        " taken in turn; median of the batches' means)"
    )
    print(f"{'':<40}" + "".join(f"{name:>11}" for name in names))
    floor = totals["floor/min"]
    for what, label in (("wall", "wall"), ("cpu", "CPU (this thread)")):
        print(f"{label:<40}" + "".join(f"{totals[name][what]:>11.0f}" for name in names))
        print(
            f"{label + ' beyond the minimal floor':<40}"
            + "".join(f"{totals[name][what] - floor[what]:>11.0f}" for name in names)
        )
    print(f"{'answers':<40}" + "".join(f"{answers(column):>11}" for column in all_columns))


def answers(column: Column) -> str:
    return "/".join(
        f"{count}x{status}" if len(column.statuses) > 1 else str(status)
        for status, count in sorted(column.statuses.items())
    )


def print_steps(all_columns: list[Column], steps: dict, leak: float) -> None:
    from django.conf import settings

    names = [column.name for column in all_columns]
    print(
        "\n2. exclusive us per request, instrumented (wall; each middleware's own work, hooks included, without what"
        f" it calls; an empty step reads {leak:.2f} us)"
    )
    print(f"{'':<40}" + "".join(f"{name:>11}" for name in names))
    order = [short_name(path) for path in settings.MIDDLEWARE] + STEPS_AFTER_MIDDLEWARE
    for step in order:
        cells = [steps[name].get(step) for name in names]
        if all(cell is None for cell in cells):
            continue
        print(f"{step:<40}" + "".join(f"{cell:>11.1f}" if cell is not None else f"{'-':>11}" for cell in cells))
    cut = [short_name(path) for path in settings.MIDDLEWARE if path not in MINIMAL_MIDDLEWARE]
    print(
        f"{'sum of the middleware beyond Security+Common':<40}"
        + "".join(f"{sum(steps[name].get(step, 0) for step in cut):>11.1f}" for name in names)
    )
    print(f"{'sum of every step':<40}" + "".join(f"{sum(steps[name].values()):>11.1f}" for name in names))


# Main ---------------------------------------------------------------------------------------------------------------


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
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, received_at timestamptz, body text)"
            )
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
