"""The fault tests' servers: a PostgreSQL and a Redis of the test's own (scripts/local_servers.py), which the tests
stop and start — never the machine's shared ones — and the site on them as production runs it."""

import sys
import time
from types import SimpleNamespace

import psycopg
import pytest
import requests


@pytest.fixture
def local_servers(settings):
    sys.path.insert(0, str(settings.BASE_DIR / "scripts"))
    try:
        import local_servers
    finally:
        sys.path.pop(0)
    return local_servers


@pytest.fixture
def local_postgres(local_servers):
    if local_servers.postgres_bin_dir() is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    # A throwaway server: durability off, so that a loaded machine spends its time on the test.
    server = local_servers.LocalPostgres(settings={"fsync": "off", "synchronous_commit": "off"})
    server.start()
    yield server
    server.remove()


@pytest.fixture
def local_redis(local_servers):
    if local_servers.redis_server_path() is None:
        pytest.skip("redis-server is not installed")
    server = local_servers.LocalRedis()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def site_on_local_postgres(local_postgres, production_helpers, cio_emulator, tmp_path):
    """The production settings on a migrated database of the local server; yields its env, processes (none started
    yet), access key and database URL."""
    database_url = local_postgres.create_database("site")
    env = production_helpers.production_env(tmp_path, database_url, cio_emulator.url)
    production_helpers.manage(env, "migrate", "--noinput")
    processes = production_helpers.Processes(tmp_path)
    try:
        yield SimpleNamespace(
            env=env, processes=processes, key=production_helpers.access_key(env), database_url=database_url
        )
    finally:
        processes.stop_all()


def query(database_url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        return connection.execute(sql, params).fetchall()


def timed(method: str, url: str, **kwargs) -> tuple[object, float]:
    """(status code, or the exception's class name when there was no answer; seconds taken)."""
    started = time.monotonic()
    try:
        status = requests.request(method, url, timeout=30, **kwargs).status_code
    except requests.RequestException as error:
        status = type(error).__name__
    return status, time.monotonic() - started


def wait_for(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
