import os
import sys

import pytest
from django.db import connection

from cio_emulator import EmulatorControl
from settings_app.models import FieldMapping
from settings_app.seed import seed_field_mappings, seed_push_mappings
from users.models import Role
from users.seed import seed_roles


def pytest_report_header(config):
    # One plain line saying whether the admin's browser tests run, and if not, why and what to install.
    from .browser import chromium

    return chromium.status_line()


def pytest_runtest_setup(item):
    # PostgreSQL-only tests (those of a throwaway server, which need initdb, among them) run in the suite's
    # PostgreSQL pass only: once per CI run rather than once per database.
    if item.get_closest_marker("postgresql") and connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: runs when the suite runs on PostgreSQL (DATABASE_URL=postgres://…)")


def _uses_database(request) -> bool:
    if request.node.get_closest_marker("django_db"):
        return True
    # Not django_db_setup: every test has it (close_rate_limiter_connections), and pytest-django builds the tables
    # only for runs holding a test that asks for the database.
    return bool({"db", "transactional_db", "live_server"} & set(request.fixturenames))


@pytest.fixture(scope="session", autouse=True)
def close_rate_limiter_connections(django_db_setup):
    """The limiter keeps its own PostgreSQL connection; close it before the test database is dropped."""
    yield
    from cio.ratelimit import close_side_connections

    close_side_connections()


@pytest.fixture(autouse=True)
def fresh_configuration():
    """Per-process configuration copies start empty in every test: rows rolled back between tests send no signal."""
    from settings_app import freshness

    freshness.forget_all()
    yield
    freshness.forget_all()


@pytest.fixture(autouse=True)
def no_refused_requests_counted():
    """Refused-request tallies (per process) and throttle counters (in the cache) start empty in every test: tests
    send wrong keys from one address, and a tally left over would be written during a later test."""
    _forget_refused_requests()
    yield
    _forget_refused_requests()


@pytest.fixture(autouse=True)
def no_customerio_calls_counted():
    """Customer.io call counts (per process, written once a minute) start empty in every test: a count left over
    from an earlier test would be written during a later one. So does the admin overview's cache."""
    from webhooks import cio_calls
    from webhooks.overview.figures import forget_settled

    cio_calls.forget()
    forget_settled()  # the admin overview's cached hours of deliveries, in Django's cache
    yield
    cio_calls.forget()


def _forget_refused_requests():
    from django.core.cache import cache

    from settings_app.freshness import cache_is_shared
    from webhooks.intake import refusals as refused

    refused.forget()
    if not cache_is_shared():
        cache.clear()  # this process's own cache
        return
    # A shared Redis: only this run's counters (the test settings give each run its own key prefix).
    client = cache._cache.get_client(write=True)
    pattern = cache.make_key(refused.COUNTER_PREFIX + "*")
    keys = list(client.scan_iter(match=pattern))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def seeded_rows(request):
    """Migration-seeded rows (the default role, the default field mappings) in every test that uses the database.

    Transactional tests and live_server flush the tables afterwards, which also removes what the data migrations
    put there; re-seeding at the start of each test makes the order of tests irrelevant.
    """
    if _uses_database(request):
        marker = request.node.get_closest_marker("django_db")
        transactional = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
        if marker and marker.kwargs.get("transaction"):
            transactional = True
        request.getfixturevalue("transactional_db" if transactional else "db")
        seed_roles(Role)
        seed_field_mappings(FieldMapping)
        seed_push_mappings(FieldMapping)
    yield


@pytest.fixture
def subprocess_env(transactional_db):
    """Environment for a process a test starts (a server, a worker) so that it opens the test database.

    Requires a transactional test: rows written inside a normal test's transaction are invisible to others.
    """
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        database_url = f"sqlite:///{settings_dict['NAME']}"
    else:
        user = settings_dict.get("USER") or ""
        password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or "5432"
        database_url = f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings",
        "DATABASE_URL": database_url,
        "ENV_FILE": os.devnull,
    }


@pytest.fixture(scope="session")
def emulator_server():
    """One Customer.io emulator (a real HTTP server on a free loopback port) for the whole run."""
    from cio_emulator import EmulatorServer

    server = EmulatorServer(port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cio_emulator(emulator_server, settings):
    """A clean emulator, with the site's Customer.io settings pointed at it. Yields its control client."""
    control = EmulatorControl(emulator_server.url)
    control.reset()
    control.configure(rate_limit=10, retry_after_header=True, latency_ms=0)
    settings.CUSTOMERIO_REGION = "us"
    settings.CUSTOMERIO_APP_API_URL = emulator_server.url
    settings.CUSTOMERIO_TRACK_API_URL = emulator_server.url
    yield control
    control.set_faults()


@pytest.fixture
def emulator_env(cio_emulator, subprocess_env):
    """subprocess_env plus the emulator's address, for processes that call Customer.io."""
    return {
        **subprocess_env,
        "CUSTOMERIO_APP_API_URL": cio_emulator.url,
        "CUSTOMERIO_TRACK_API_URL": cio_emulator.url,
    }


@pytest.fixture
def production_helpers(settings):
    """scripts/production_site.py: gunicorn started as production runs it (scripts/ is not a package)."""
    sys.path.insert(0, str(settings.BASE_DIR / "scripts"))
    try:
        import production_site
    finally:
        sys.path.pop(0)
    return production_site
