"""GET /healthz: what a load balancer or uptime monitor sees."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from webhooks.models import WebhookDelivery, WorkerHeartbeat


def test_healthz_reports_the_database_the_queue_and_the_workers(client, emulator):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "deliveries_waiting": 0,
        "oldest_waiting_seconds": None,
        "worker_heartbeat_seconds": None,
    }
    now = timezone.now()
    for status, age in (("queued", 120), ("retrying", 30), ("processing", 5), ("succeeded", 900), ("invalid", 999)):
        delivery = WebhookDelivery.objects.create(action="update", status=status)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(received_at=now - timedelta(seconds=age))
    WorkerHeartbeat.objects.create(worker_id="a", started_at=now, seen_at=now - timedelta(seconds=3))
    WorkerHeartbeat.objects.create(worker_id="b", started_at=now, seen_at=now - timedelta(hours=2))

    answer = client.get("/healthz")
    assert answer.status_code == 200
    figures = answer.json()
    assert figures["deliveries_waiting"] == 3
    assert 120 <= figures["oldest_waiting_seconds"] < 130
    assert 3 <= figures["worker_heartbeat_seconds"] < 13
    assert "no-cache" in answer["Cache-Control"]
    assert not answer.cookies  # no session, no CSRF cookie
    assert emulator.requests() == []  # never Customer.io


def test_a_long_queue_does_not_fail_the_health_check(client):
    delivery = WebhookDelivery.objects.create(action="update", status="queued")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(received_at=timezone.now() - timedelta(days=1))
    assert client.get("/healthz").status_code == 200


def test_healthz_is_exempt_from_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/healthz").status_code == 200


def test_healthz_answers_503_naming_the_database_when_it_is_unreachable(tmp_path):
    script = (
        "import django; django.setup()\n"
        "from django.test.utils import setup_test_environment; setup_test_environment()\n"
        "from django.test import Client\n"
        "answer = Client().get('/healthz')\n"
        "print(answer.status_code, answer.content.decode())\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings",
        "ENV_FILE": os.devnull,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-folder' / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    status, _, body = result.stdout.strip().partition(" ")
    assert status == "503", result.stderr
    assert '"database": "unreachable"' in body
    assert "database unreachable: OperationalError" in body


def test_a_worker_records_its_heartbeat(subprocess_env, client):
    subprocess.run(
        [sys.executable, "manage.py", "webhook_worker", "--batch", "--worker-id", "host-1"],
        cwd=settings.BASE_DIR,
        env=subprocess_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    beat = WorkerHeartbeat.objects.get(worker_id="host-1")
    assert beat.pid and beat.host
    assert client.get("/healthz").json()["worker_heartbeat_seconds"] < 60


def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    proxied = client.get("/admin/login/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    forged = client.get("/admin/login/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")
    assert forged.status_code == 301
    assert forged["Location"].startswith("https://")


@pytest.mark.django_db(transaction=True)
def test_a_worker_stuck_in_a_task_stops_beating_and_beats_again_once_it_moves(client, cio_emulator, settings):
    """The heartbeat follows the worker loop (tasks taken and finished, idle polls), not the process."""
    import json
    import threading
    import time

    from settings_app.models import WebhookSettings
    from users.models import User
    from webhooks.queue.worker import beat

    from .conftest import FIXTURE

    cio_emulator.reset(FIXTURE)
    User.objects.create_user(username="ann", email="ann@example.com")
    settings.WEBHOOK_WORKER_STALL_SECONDS = 0.5
    key = WebhookSettings.load().access_key
    queued = client.post(
        f"/?wpf_action=update_tags&access_key={key}&async=true",
        json.dumps({"email": "ann@example.com"}),
        content_type="application/json",
    )
    assert queued.status_code == 200
    cio_emulator.configure(latency_ms=2500)  # the task hangs in a Customer.io call
    worker = progress_worker("stuck")
    started = timezone.now()
    assert beat(worker, "stuck", started)
    runner = threading.Thread(target=worker.run)
    runner.start()
    time.sleep(1.5)

    assert worker.task_started is not None  # still inside the task
    seen = WorkerHeartbeat.objects.get(worker_id="stuck").seen_at
    assert not beat(worker, "stuck", started)
    assert WorkerHeartbeat.objects.get(worker_id="stuck").seen_at == seen

    runner.join(timeout=30)
    assert beat(worker, "stuck", started)  # finished the task: progress again
    assert WorkerHeartbeat.objects.get(worker_id="stuck").seen_at > seen
    assert WebhookDelivery.objects.get().status == "succeeded"


@pytest.mark.django_db
def test_a_worker_writing_outcomes_inside_one_long_task_keeps_beating(settings, monkeypatch):
    """One task may process thousands of deliveries: each outcome it writes is progress, so a long batch is not
    reported as a stuck worker."""
    import time

    from webhooks import deliveries
    from webhooks.processing import Outcome
    from webhooks.queue.worker import beat

    settings.WEBHOOK_WORKER_STALL_SECONDS = 0.5
    worker = progress_worker("busy")
    worker.last_progress = worker.task_started = time.monotonic() - 60  # inside a task for a minute
    monkeypatch.setattr(deliveries, "_last_recorded", time.monotonic() - 60)  # and no outcome written since
    started = timezone.now()
    assert not beat(worker, "busy", started)

    delivery = WebhookDelivery.objects.create(action="update_tags", status="processing")
    deliveries.record_outcome([delivery], Outcome("succeeded", 200, {"status": "ok"}), duration_ms=5)

    assert beat(worker, "busy", started)
    assert WorkerHeartbeat.objects.filter(worker_id="busy").exists()


def progress_worker(worker_id: str):
    """The webhook worker's loop as `webhook_worker` builds it, polling every 0.1 s."""
    from webhooks.queue.worker import ProgressWorker

    return ProgressWorker(
        queue_names=["default"],
        interval=0.1,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )
