"""Message events under concurrency (threads, real HTTP and real connections). Runs on PostgreSQL in CI: retries of
one event arriving at once store it once; workers taking batches side by side (SKIP LOCKED) process each event
once."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from users.models import SegmentChange, Tag, User, UserTag
from webhooks.message_events.processing import process_batch
from webhooks.models import MessageEvent, MessageReaction
from webhooks.signals import message_event_received

from .conftest import URL, event, signature

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def test_twenty_copies_of_one_event_at_once_store_it_once(live_server):
    body = json.dumps(event(metric="opened", event_id="evt-at-once")).encode()

    def send(n):
        timestamp = str(int(time.time()))
        headers = {"X-CIO-Timestamp": timestamp, "X-CIO-Signature": signature(body, timestamp)}
        return requests.post(live_server.url + URL, data=body, headers=headers, timeout=60).json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    assert answers.count({"status": "ok"}) == 1
    assert answers.count({"status": "ok", "duplicate": True}) == 19
    assert MessageEvent.objects.count() == 1


def test_workers_side_by_side_process_each_event_once():
    vip = Tag.objects.create(segment_id=1, name="VIP", kind=Tag.Kind.MANUAL)
    MessageReaction.objects.create(metric="clicked", kind=MessageReaction.Kind.APPLY_TAG, tag=vip)
    people = [
        User.objects.create_user(username=f"p{n}", email=f"p{n}@example.com", password="x", cio_id=f"cio-{n}")
        for n in range(60)
    ]
    for n, person in enumerate(people):
        for metric in ("delivered", "clicked"):
            MessageEvent.objects.create(
                event_id=f"evt-{n}-{metric}",
                metric=metric,
                channel="email",
                occurred_at="2026-12-01T10:00:00Z",
                email=person.email,
                cio_id=person.cio_id,
            )
    seen, lock = [], threading.Lock()

    def receiver(sender, event, user, **kwargs):
        with lock:
            seen.append(event.event_id)

    message_event_received.connect(receiver, dispatch_uid="tests.concurrency")
    start = threading.Barrier(3)

    def worker():
        start.wait()
        taken = 0
        try:
            while done := process_batch(limit=7):
                taken += done
        finally:
            connection.close()
        return taken

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            taken = [future.result() for future in [pool.submit(worker) for _ in range(3)]]
    finally:
        message_event_received.disconnect(dispatch_uid="tests.concurrency")

    assert sum(taken) == 120
    assert sorted(seen) == sorted(MessageEvent.objects.values_list("event_id", flat=True))  # each once
    assert MessageEvent.objects.filter(processed_at__isnull=True).count() == 0
    assert UserTag.objects.filter(tag=vip).count() == 60
    assert SegmentChange.objects.count() == 60  # one add per person, not one per worker
