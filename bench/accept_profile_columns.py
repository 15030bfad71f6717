"""bench/accept_profile.py's columns — one endpoint under one MIDDLEWARE, called in this process with raw WSGI
environs as gunicorn calls it — and their measurement in batches taken in turn: totals uninstrumented, then the
exclusive time of each step."""

import io
import statistics
import sys
import time
from collections import defaultdict

from accept_profile_clock import CLOSE, LOG_4XX, Clock, build_handler, database_steps, query_step

MINIMAL_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
FLOOR_URLS = "bench.floor_urls"
BODY = b'{"email": "ann@example.com"}'


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
