"""A worker process's Customer.io calls reach the hourly counts (CustomerIOCallHour) — written at the latest when it
exits, since it counts in memory."""

from collections import Counter

import pytest
from django.db.models import Sum

from webhooks.models import CustomerIOCallHour, WebhookDelivery

from .workers import queued, run_worker_until_idle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_workers_calls_are_counted_by_the_time_it_exits(client, worker_env, cio_emulator):
    accepted = queued(client, "add")
    run_worker_until_idle(worker_env)  # processes the delivery, then exits
    assert WebhookDelivery.objects.get(pk=accepted["delivery_id"]).status == "succeeded"

    sent = cio_emulator.call_counts()
    assert sent["app"] > 0
    counted = Counter(dict(CustomerIOCallHour.objects.values_list("api").annotate(n=Sum("count")).order_by()))
    assert counted == Counter({api: n for api, n in sent.items() if n})
    assert set(CustomerIOCallHour.objects.values_list("answer", flat=True)) == {"ok"}
