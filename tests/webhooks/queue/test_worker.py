"""The worker's sign of life: a heartbeat written while its loop makes progress, not merely while its process runs."""

import json
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.utils import timezone

from settings_app.models import WebhookSettings
from users.models import User
from webhooks import deliveries
from webhooks.models import WebhookDelivery, WorkerHeartbeat
from webhooks.processing import Outcome
from webhooks.queue.task_rows import PROCESS_DELIVERY
from webhooks.queue.worker import ProgressWorker, beat

from ..conftest import FIXTURE


def test_a_worker_records_its_heartbeat(subprocess_env, client):
    subprocess.run(
        [sys.executable, "manage.py", "webhook_worker", "--batch", "--worker-id", "host-1"],
        cwd=settings.BASE_DIR,
        env=subprocess_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    heartbeat = WorkerHeartbeat.objects.get(worker_id="host-1")
    assert heartbeat.pid and heartbeat.host
    assert client.get("/healthz").json()["worker_heartbeat_seconds"] < 60


@pytest.mark.django_db(transaction=True)
def test_a_worker_stuck_in_a_task_stops_beating_and_beats_again_once_it_moves(client, cio_emulator, settings):
    """The heartbeat follows the worker loop (tasks taken and finished, idle polls), not the process."""
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
    return ProgressWorker(
        queue_names=[PROCESS_DELIVERY.queue_name],
        interval=0.1,
        batch=True,
        backend_name=PROCESS_DELIVERY.backend,
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )
