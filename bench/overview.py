# ruff: noqa: S608 -- the fill statements are the script's own constants (row counts and ids), never outside input
"""The admin overview's queries on a big table: 2,000,000 deliveries over 7 days, on SQLite and PostgreSQL.

    .venv/bin/python bench/overview.py [--deliveries N] [--only sqlite|postgres]

For each database — a fresh SQLite file in a temporary folder, and a fresh PostgreSQL database `bench_overview` on
127.0.0.1:5432 (BENCH_POSTGRES_URL to change it; skipped when no server answers) — it migrates, fills the tables
in the database itself (one INSERT ... SELECT over generate_series / a recursive CTE, not row by row): N deliveries
received evenly over the last 7 days (85 % succeeded, 8 % skipped, 4 % failed, 2 % invalid; the newest 1,000
waiting, 200 of them retrying), 100,000 users (1,000 owed a password return), 10,000 tag changes (500 unsent),
Customer.io call counts and refused-request counts for every hour, and 4 worker heartbeats. Then it analyses the
tables and times each of the page's queries (median of 5 runs after a warm-up), the whole page through Django's
test client (the admin view, its template and 6 charts) — with the cache of settled hours empty (every 5 minutes at
most) and filled (the other page views) — and prints the query plan of the deliveries' GROUP BY over 7 days.
Unless --no-compare-index, it then adds an index on (received_at, status) and times the deliveries' 7 days and the
queue's count again, with their plans: what such an index would buy and cost.

Each database runs in a process of its own (Django is set up once per process). Figures, not pass/fail.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/bench_overview")
RUNS = 5
STATIC_FROM_APPS = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2_000_000)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--no-compare-index", dest="compare_index", action="store_false")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a database URL: run in this process
    options = parser.parse_args()
    if options.one:
        return run_one(options.one, options.deliveries, options.compare_index)
    urls = []
    with tempfile.TemporaryDirectory() as folder:
        if options.only in (None, "sqlite"):
            urls.append(f"sqlite:///{Path(folder) / 'overview.sqlite3'}")
        if options.only in (None, "postgres"):
            if fresh_postgres_database(POSTGRES_URL):
                urls.append(POSTGRES_URL)
            else:
                print(f"PostgreSQL: skipped (nothing answers at {POSTGRES_URL.rsplit('@', 1)[-1]})")
        for url in urls:
            arguments = ["--one", url, "--deliveries", str(options.deliveries)]
            if not options.compare_index:
                arguments.append("--no-compare-index")
            subprocess.run([sys.executable, __file__, *arguments], cwd=ROOT, env=site_env(url), check=True)


def site_env(url: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
        "ENV_FILE": os.devnull,
        "DEBUG": "off",
        "SECRET_KEY": "bench-only-secret-key",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
    }


def fresh_postgres_database(url: str) -> bool:
    import psycopg

    server, name = url.rsplit("/", 1)
    try:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return False
    return True


# In the database's own process -----------------------------------------------------------------------------------


def run_one(url: str, deliveries: int, compare_index: bool) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import override_settings

    # The admin's CSS from the apps' folders: no collectstatic manifest needed to render the page.
    override_settings(STORAGES=STATIC_FROM_APPS).enable()

    vendor = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    fill(connection, deliveries)
    filled = time.monotonic() - started
    print(f"\n== {vendor}: {deliveries:,} deliveries over 7 days (filled and analysed in {filled:.0f} s)")
    print(f"   deliveries table: {table_size(connection)}")
    timings = time_queries()
    width = max(len(name) for name in timings)
    print(f"   {'query':<{width}}  median of {RUNS}  (min - max)")
    for name, runs in timings.items():
        print(f"   {name:<{width}}  {ms(statistics.median(runs)):>9}  ({ms(min(runs))} - {ms(max(runs))})")
    print("   plan of the deliveries per hour, all 7 days:")
    for line in deliveries_plan(connection):
        print(f"     {line}")
    print("   plan of the deliveries per hour, recent hours (the others cached):")
    for line in deliveries_plan(connection, recent=True):
        print(f"     {line}")
    print("   plan of the queue now (/healthz reads it too):")
    for line in backlog_plan(connection):
        print(f"     {line}")
    if compare_index:
        # The alternative: an index on (received_at, status), which PostgreSQL can read without the rows.
        with connection.cursor() as cursor:
            cursor.execute("CREATE INDEX bench_received_status ON webhooks_webhookdelivery (received_at, status)")
        analyse(connection)
        print("   with an index on (received_at, status) added:")
        for name, runs in time_alternative().items():
            print(f"   {name:<{width}}  {ms(statistics.median(runs)):>9}  ({ms(min(runs))} - {ms(max(runs))})")
        print("   plan of the deliveries per hour, all 7 days:")
        for line in deliveries_plan(connection):
            print(f"     {line}")
        print("   plan of the queue now (/healthz reads it too):")
        for line in backlog_plan(connection):
            print(f"     {line}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def fill(connection, deliveries: int) -> None:
    from users.models import Role

    role_id = Role.get_default().pk
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        for statement in POSTGRES_FILL if postgres else SQLITE_FILL:
            cursor.execute(statement.format(n=deliveries, role_id=role_id))
    analyse(connection)


def analyse(connection) -> None:
    with connection.cursor() as cursor:
        # PostgreSQL: VACUUM sets the visibility map an index-only scan needs (autovacuum does it in production).
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def table_size(connection) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_size_pretty(pg_relation_size('webhooks_webhookdelivery')), "
                "pg_size_pretty(pg_indexes_size('webhooks_webhookdelivery'))"
            )
            table, indexes = cursor.fetchone()
            return f"rows {table}, indexes {indexes}"
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        return f"whole database file {pages * cursor.fetchone()[0] / 2**20:,.0f} MB"


def timed(function) -> list[float]:
    function()  # warm-up
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return runs


def time_queries() -> dict[str, list[float]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from users.services.accounts.passwords import password_returns_owed
    from users.services.segment_changes import waiting_changes
    from webhooks.health import queue_backlog
    from webhooks.overview import figures

    now = timezone.now()
    hours, days, since = figures._periods(now)
    admin = get_user_model().objects.create_superuser("bench-admin", "bench-admin@example.com", "x")
    client = Client()
    client.force_login(admin)

    def page():
        response = client.get("/admin/webhooks/overview/")
        assert response.status_code == 200, response.status_code

    def cold(function):
        def run():
            figures.forget_settled()
            return function()

        return run

    def warm(function):
        figures.forget_settled()
        function()  # counts the settled hours into the cache
        return function

    return {
        "deliveries per hour, all 7 days (cache empty)": timed(
            cold(lambda: figures.deliveries_per_hour(since, hours, days, now))
        ),
        "deliveries per hour, recent hours (rest cached)": timed(
            warm(lambda: figures.deliveries_per_hour(since, hours, days, now))
        ),
        "Customer.io calls per hour": timed(lambda: figures.calls_per_hour(since, hours, days)),
        "refused requests per hour": timed(lambda: figures.refused_per_hour(since, hours, days)),
        "queue now (waiting, oldest)": timed(queue_backlog),
        "failing contacts (2 queries)": timed(lambda: figures.failing_contacts(now)),
        "worker heartbeats": timed(lambda: figures.workers(now)),
        "owed password returns": timed(password_returns_owed),
        "waiting tag changes": timed(waiting_changes),
        "all nine queries (cache empty)": timed(cold(figures.read_figures)),
        "all nine queries (settled hours cached)": timed(warm(figures.read_figures)),
        "the whole page (cache empty)": timed(cold(page)),
        "the whole page (settled hours cached)": timed(warm(page)),
    }


def time_alternative() -> dict[str, list[float]]:
    from django.utils import timezone

    from webhooks.health import queue_backlog
    from webhooks.overview import figures

    now = timezone.now()
    hours, days, since = figures._periods(now)

    def count_all():
        figures.forget_settled()
        figures.deliveries_per_hour(since, hours, days, now)

    return {
        "deliveries per hour, all 7 days (cache empty)": timed(count_all),
        "queue now (waiting, oldest)": timed(queue_backlog),
    }


def backlog_plan(connection) -> list[str]:
    """The plan of webhooks.health.queue_backlog's one query."""
    statement = (
        "SELECT COUNT(id), MIN(received_at) FROM webhooks_webhookdelivery "
        "WHERE status IN ('queued', 'retrying', 'processing')"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN ANALYZE " + statement)
            return [row[0] for row in cursor.fetchall()]
        cursor.execute("EXPLAIN QUERY PLAN " + statement)
        return [row[-1] for row in cursor.fetchall()]


def deliveries_plan(connection, *, recent: bool = False) -> list[str]:
    from django.utils import timezone

    from webhooks.overview import figures

    now = timezone.now()
    hours, days, since = figures._periods(now)
    if recent:  # from the start of the hour that began SETTLED before now, as deliveries_per_hour asks
        since = (now - figures.SETTLED).replace(minute=0, second=0, microsecond=0)
    query = figures.deliveries_query(since)
    options = {"analyze": True} if connection.vendor == "postgresql" else {}
    return query.explain(**options).splitlines()


# Status of delivery i (1 = the newest): the newest 1,000 wait (200 of them for a retry), the rest by i % 100.
_STATUS = """CASE WHEN i <= 200 THEN 'retrying' WHEN i <= 1000 THEN 'queued'
    WHEN i % 100 < 85 THEN 'succeeded' WHEN i % 100 < 93 THEN 'skipped'
    WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 99 THEN 'invalid' ELSE 'failed' END"""
_DELIVERY_COLUMNS = """(received_at, updated_at, action, contact, contact_type, contact_key, query, body, remote_ip,
    cio_delivery_id, idempotency_key, status, http_status, result, error, traceback, attempts, duration_ms,
    task_id, access_key_fingerprint)"""

POSTGRES_FILL = [
    f"""INSERT INTO webhooks_webhookdelivery {_DELIVERY_COLUMNS}
    SELECT t, t, 'update', 'person' || (i % 200000) || '@example.com', 'email',
        'email:person' || (i % 200000) || '@example.com', '{{{{"wpf_action": "update"}}}}'::jsonb,
        jsonb_build_object('email', 'person' || (i % 200000) || '@example.com'), '198.51.100.7',
        md5(i::text), '', s, 200, '{{{{"message": "Updated"}}}}'::jsonb,
        CASE WHEN s = 'failed' THEN 'upstream_error: Customer.io answered 502' ELSE '' END, '', 1, 40, '', 'abcd1234'
    FROM (SELECT i, now() - (i * interval '7 days') / {{n}} AS t, {_STATUS} AS s
          FROM generate_series(1, {{n}}) AS i) AS series""",
    """INSERT INTO users_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
        date_joined, email_normalized, role_id, meta, password_return_due, welcome_email_due)
    SELECT '!', false, 'user' || i, '', '', 'user' || i || '@example.com', false, true, now(),
        'user' || i || '@example.com', {role_id}, '{{}}'::jsonb, i % 100 = 0, false
    FROM generate_series(1, 100000) AS i""",
    """INSERT INTO users_tag (segment_id, name, kind) VALUES (1, 'VIP', 'manual')""",
    """INSERT INTO users_segmentchange (user_id, tag_id, action, created_at, attempts, next_attempt_at, sent_at,
        last_error)
    SELECT (SELECT min(id) FROM users_user) + i, (SELECT id FROM users_tag), 'add', now() - i * interval '1 minute', 0,
        now(), CASE WHEN i <= 500 THEN NULL ELSE now() END, ''
    FROM generate_series(1, 10000) AS i""",
    """INSERT INTO webhooks_customeriocallhour (hour, api, answer, count)
    SELECT date_trunc('hour', now()) - h * interval '1 hour', api, answer, 100 + h
    FROM generate_series(0, 24 * 7) AS h, unnest(ARRAY['app', 'track']) AS api,
        unnest(ARRAY['ok', '429', '4xx', '5xx', 'error']) AS answer""",
    """INSERT INTO webhooks_refusedrequestwindow (window_start, address, overflow, count, wrong_key, missing_key,
        throttled, first_seen, last_seen, actions)
    SELECT date_trunc('hour', now()) - h * interval '1 hour', '203.0.113.' || a, false, 30, 30, 0, 5, now(), now(),
        '[]'::jsonb
    FROM generate_series(0, 24 * 7) AS h, generate_series(1, 20) AS a""",
    """INSERT INTO webhooks_workerheartbeat (worker_id, host, pid, started_at, seen_at)
    SELECT 'webhook-' || w, 'worker-host', 1000 + w, now() - interval '1 day', now() - w * interval '3 seconds'
    FROM generate_series(1, 4) AS w""",
]

_SQLITE_SERIES = "WITH RECURSIVE series(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM series WHERE i < {limit})"
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S', 'now'"
SQLITE_FILL = [
    _SQLITE_SERIES.format(limit="{n}")
    + f"""
    INSERT INTO webhooks_webhookdelivery {_DELIVERY_COLUMNS}
    SELECT t, t, 'update', 'person' || (i % 200000) || '@example.com', 'email',
        'email:person' || (i % 200000) || '@example.com', '{{{{"wpf_action": "update"}}}}',
        json_object('email', 'person' || (i % 200000) || '@example.com'), '198.51.100.7', hex(randomblob(16)), '',
        s, 200, '{{{{"message": "Updated"}}}}',
        CASE WHEN s = 'failed' THEN 'upstream_error: Customer.io answered 502' ELSE '' END, '', 1, 40, '', 'abcd1234'
    FROM (SELECT i, {_SQLITE_NOW}, '-' || (i * 604800 / {{n}}) || ' seconds') AS t, {_STATUS} AS s FROM series)""",
    _SQLITE_SERIES.format(limit=100000)
    + """
    INSERT INTO users_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
        date_joined, email_normalized, role_id, meta, password_return_due, welcome_email_due)
    SELECT '!', 0, 'user' || i, '', '', 'user' || i || '@example.com', 0, 1, datetime('now'),
        'user' || i || '@example.com', {role_id}, '{{}}', i % 100 = 0, 0 FROM series""",
    """INSERT INTO users_tag (segment_id, name, kind) VALUES (1, 'VIP', 'manual')""",
    _SQLITE_SERIES.format(limit=10000)
    + f"""
    INSERT INTO users_segmentchange (user_id, tag_id, action, created_at, attempts, next_attempt_at, sent_at,
        last_error)
    SELECT (SELECT min(id) FROM users_user) + i, (SELECT id FROM users_tag), 'add',
        {_SQLITE_NOW}, '-' || i || ' minutes'), 0, datetime('now'),
        CASE WHEN i <= 500 THEN NULL ELSE datetime('now') END, '' FROM series""",
    _SQLITE_SERIES.format(limit=24 * 7)
    + """
    INSERT INTO webhooks_customeriocallhour (hour, api, answer, count)
    SELECT strftime('%Y-%m-%d %H:00:00', 'now', '-' || i || ' hours'), api.value, answer.value, 100 + i
    FROM series, json_each('["app", "track"]') AS api, json_each('["ok", "429", "4xx", "5xx", "error"]') AS answer""",
    _SQLITE_SERIES.format(limit=24 * 7)
    + """
    INSERT INTO webhooks_refusedrequestwindow (window_start, address, overflow, count, wrong_key, missing_key,
        throttled, first_seen, last_seen, actions)
    SELECT strftime('%Y-%m-%d %H:00:00', 'now', '-' || i || ' hours'), '203.0.113.' || a.value, 0, 30, 30, 0, 5,
        datetime('now'), datetime('now'), '[]'
    FROM series, json_each('[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]') AS a""",
    _SQLITE_SERIES.format(limit=4)
    + """
    INSERT INTO webhooks_workerheartbeat (worker_id, host, pid, started_at, seen_at)
    SELECT 'webhook-' || i, 'worker-host', 1000 + i, datetime('now', '-1 day'),
        strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (3 * i) || ' seconds') FROM series""",
]


if __name__ == "__main__":
    main()
