"""bench/accept_profile.py's instrumentation: a clock that charges each moment of a request to the step on top
(exclusive time), hooked into every middleware class, the handler's own steps, request.GET, and psycopg and its
pool; and the WSGI handler built with or without it."""

import contextlib
import threading
import time
from collections import defaultdict

import psycopg


def short_name(middleware_path: str) -> str:
    return middleware_path.rsplit(".", 1)[1].removesuffix("Middleware")


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


def clock_leak(samples: int = 20000) -> float:
    """Microseconds an empty step is charged (half a clock reading each side): the floor of every figure below."""
    clock = Clock()
    clock.enter("outer")
    for _ in range(samples):
        clock.enter("empty")
        clock.exit()
    clock.exit()
    return clock.totals["empty"] / samples / 1000
