"""GET /healthz: what a load balancer or uptime monitor sees."""

import os
import subprocess
import sys
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from webhooks.models import WebhookDelivery, WorkerHeartbeat


def test_healthz_reports_the_database_the_queue_and_the_workers(client, db, emulator):
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


def test_a_long_queue_does_not_fail_the_health_check(client, db):
    delivery = WebhookDelivery.objects.create(action="update", status="queued")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(received_at=timezone.now() - timedelta(days=1))
    assert client.get("/healthz").status_code == 200


def test_healthz_is_exempt_from_the_https_redirect(client, db, settings):
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


def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    proxied = client.get("/admin/login/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    forged = client.get("/admin/login/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")
    assert forged.status_code == 301
    assert forged["Location"].startswith("https://")
