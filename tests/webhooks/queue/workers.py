"""Driving the queue from a test: webhooks accepted for the background, and real `webhook_worker` processes."""

import json

from settings_app.models import WebhookSettings
from tests.worker_processes import run_worker_until_idle, start_worker, stop, wait_for

# The worker helpers are shared with the segment sender's tests; the queue's tests import them from here.
__all__ = ["queued", "run_worker_until_idle", "start_worker", "stop", "wait_for"]


def queued(client, action, email="ann@example.com", body=None, headers=None, **params):
    key = WebhookSettings.load().access_key
    query = "&".join(
        [f"wpf_action={action}", f"access_key={key}", "async=true", *(f"{k}={v}" for k, v in params.items())]
    )
    response = client.post(
        f"/?{query}", data=json.dumps(body or {"email": email}), content_type="application/json", headers=headers or {}
    )
    assert response.status_code == 200, response.content
    return response.json()
