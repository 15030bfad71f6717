"""prune_message_events: message events older than --days (180 by default) go, the worker's unprocessed ones stay."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from webhooks.management.commands import prune_message_events
from webhooks.models import MessageEvent

pytestmark = pytest.mark.django_db


def stored(event_id, age_days, processed=True):
    now = timezone.now()
    return MessageEvent.objects.create(
        event_id=event_id,
        metric="sent",
        occurred_at=now - timedelta(days=age_days),
        processed_at=now if processed else None,
    )


def prune(*args) -> str:
    out = io.StringIO()
    call_command("prune_message_events", *args, stdout=out)
    return out.getvalue().strip()


def test_events_past_180_days_are_deleted_by_default(monkeypatch):
    monkeypatch.setattr(prune_message_events, "CHUNK", 2)  # several chunks
    for n in range(5):
        stored(f"old-{n}", 181)
    stored("recent", 179)
    stored("old-but-waiting", 400, processed=False)
    assert prune() == "Deleted 5 message events older than 180 days."
    assert set(MessageEvent.objects.values_list("event_id", flat=True)) == {"recent", "old-but-waiting"}


def test_days_is_a_choice():
    stored("a-month", 31)
    stored("a-week", 7)
    assert prune("--days", "30") == "Deleted 1 message events older than 30 days."
    assert list(MessageEvent.objects.values_list("event_id", flat=True)) == ["a-week"]
    with pytest.raises(CommandError, match="--days must be at least 1"):
        prune("--days", "0")
