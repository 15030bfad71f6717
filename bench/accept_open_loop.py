"""bench/accept.py's open loop: `add&async=true` webhooks for new contacts sent at a fixed rate, whatever the answers
take, while one webhook_worker drains the queue; latency from each request's scheduled time."""

import http.client
import json
import sqlite3
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests
from accept_throughput import WEB
from load import percentile
from production_site import PYTHON, VIA_PROXY, Processes, manage, start_gunicorn

OPEN_LOOP_RATE = 100  # webhooks per second
CUSTOMERIO_WAITS = 4.0  # seconds Customer.io waits for an answer
DRAIN_TIMEOUT = 60.0  # seconds the open loop waits for the worker to finish what was sent


def open_loop_fixture(count: int) -> dict:
    return {
        "segments": [{"id": 1, "name": "Customers", "type": "manual"}],
        "customers": [
            {"email": f"open{n}@example.com", "id": f"o{n}", "attributes": {"first_name": f"Open{n}"}, "segments": [1]}
            for n in range(count)
        ],
    }


def send_open_loop(site: str, key: str, rate: int, seconds: float) -> list[tuple[float, int]]:
    """`add&async=true` for open0@, open1@, ... at a fixed rate; (latency from the scheduled time, status) each."""
    host, port = site.removeprefix("http://").split(":")
    count = int(rate * seconds)
    local = threading.local()
    results: list[tuple[float, int] | None] = [None] * count

    def send(n, due):
        headers = {**VIA_PROXY, "Content-Type": "application/json", "X-CIO-Delivery-ID": f"open-{n}"}
        body = json.dumps({"email": f"open{n}@example.com"}).encode()
        status = 0
        # A kept-alive connection the server closed while idle (gunicorn's keepalive is 5 s) fails before any answer:
        # sent again once on a new connection, as HTTP clients do (the same delivery id: never accepted twice).
        for _attempt in range(2):
            reused = getattr(local, "connection", None)
            connection = reused or http.client.HTTPConnection(host, int(port), timeout=60)
            local.connection = connection
            try:
                connection.request("POST", f"/?wpf_action=add&async=true&access_key={key}", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                local.connection = None
                if reused is None:
                    break
            except OSError:
                connection.close()
                local.connection = None
                break
        results[n] = (time.perf_counter() - due, status)

    start = time.perf_counter() + 0.2
    with ThreadPoolExecutor(max_workers=128) as pool:
        for n in range(count):
            due = start + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pool.submit(send, n, due)
    return [result for result in results if result is not None]


def sql(env: dict, kind: str, *statements: str):
    """Run statements on the benchmark's database; the last one's first row."""
    if kind == "postgres":
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
            for statement in statements:
                cursor = connection.execute(statement)
            return cursor.fetchone() if cursor.description else None
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"), isolation_level=None) as connection:
        for statement in statements:
            cursor = connection.execute(statement)
        return cursor.fetchone()


def empty_queue(env: dict, kind: str) -> None:
    sql(env, kind, "DELETE FROM webhooks_webhookdelivery", "DELETE FROM django_tasks_database_dbtaskresult")


def queue_state(env: dict, kind: str) -> tuple[int, int]:
    """(deliveries finished, deliveries still waiting or processing)."""
    row = sql(
        env,
        kind,
        "SELECT sum(CASE WHEN status IN ('succeeded', 'skipped', 'failed') THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status IN ('queued', 'retrying', 'processing') THEN 1 ELSE 0 END) FROM webhooks_webhookdelivery",
    )
    return int(row[0] or 0), int(row[1] or 0)


def measure_open_loop(workdir: Path, env: dict, kind: str, key: str, emulator: str, seconds: float) -> dict:
    count = int(OPEN_LOOP_RATE * seconds)
    requests.post(f"{emulator}/_emulator/reset", json={"fixture": open_loop_fixture(count)}, timeout=30)
    manage(
        env,
        "shell",
        "-c",
        "from settings_app.models import WebhookSettings; from settings_app import freshness; "
        "WebhookSettings.load(); WebhookSettings.objects.update(return_password=True, "
        "return_password_field='wp_password'); freshness.changed('webhook_settings')",
    )
    empty_queue(env, kind)  # what the throughput runs left queued is not this measurement's work
    processes = Processes(workdir)
    try:
        site = start_gunicorn(processes, env, **WEB)
        processes.start("worker", [PYTHON, "manage.py", "webhook_worker", "--interval", "0.2"], env)
        time.sleep(1.0)
        sent = send_open_loop(site, key, OPEN_LOOP_RATE, seconds)
        finished, waiting = queue_state(env, kind)
        drain_started = time.monotonic()
        while waiting and time.monotonic() - drain_started < DRAIN_TIMEOUT:
            time.sleep(0.5)
            finished, waiting = queue_state(env, kind)
        drained = time.monotonic() - drain_started
    finally:
        processes.stop_all()
    latencies = [latency for latency, _ in sent]
    return {
        "sent": len(sent),
        "accepted": sum(1 for _, status in sent if status == 200),
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "max": max(latencies) * 1000,
        "late": sum(1 for latency in latencies if latency > CUSTOMERIO_WAITS),
        "finished": finished,
        "waiting": waiting,
        "drained": drained,
    }
