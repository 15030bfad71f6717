"""Customer.io calls per hour (CustomerIOCallHour, the admin overview's chart): counted from api_call_finished in
memory, written at most once a minute and at a flush, never one write per call."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from cio import get_client
from cio.errors import CustomerIOError
from webhooks import cio_calls
from webhooks.models import CustomerIOCallHour

TABLE = CustomerIOCallHour._meta.db_table
# Transactional: counts are never written inside a transaction the caller holds, and a test's own is one.
written = pytest.mark.django_db(transaction=True)


@pytest.fixture
def emulator(cio_emulator, settings):
    cio_emulator.reset(
        {
            "segments": [{"id": 1, "name": "VIP", "type": "manual"}],
            "customers": [{"email": "ann@example.com", "id": "ann", "attributes": {}, "segments": [1]}],
        }
    )
    settings.CUSTOMERIO_MAX_RETRIES = 2
    return cio_emulator


@pytest.fixture
def clock(monkeypatch):
    """cio_calls' clock, moved by hand."""
    now = [datetime(2026, 12, 7, 10, 30, tzinfo=UTC).timestamp()]
    monkeypatch.setattr(cio_calls, "clock", lambda: now[0])
    cio_calls.forget()  # its last flush is now
    return now


def counts():
    return {(row.api, row.answer): row.count for row in CustomerIOCallHour.objects.all()}


def writes_to_the_table(queries) -> int:
    return sum(TABLE in query["sql"] for query in queries.captured_queries)


@written
def test_calls_through_the_client_show_up_after_a_flush(emulator):
    client = get_client()
    client.get_attributes("ann@example.com")
    client.get_segments("ann@example.com")
    client.identify({"email": "ann@example.com"}, {"plan": "gold"})
    with pytest.raises(CustomerIOError):
        client.get_attributes("nobody@example.com")  # 404
    emulator.set_faults(fail_rate=1.0, fail_status=429, path_prefix="/v1/segments")
    with pytest.raises(CustomerIOError):
        client.list_segments()  # 429, retried twice: three attempts
    emulator.set_faults()
    assert counts() == {}  # nothing written yet

    cio_calls.flush()
    assert counts() == {("app", "ok"): 2, ("app", "4xx"): 1, ("app", "429"): 3, ("track", "ok"): 1}
    assert sum(counts().values()) == sum(emulator.call_counts().values())
    hour = CustomerIOCallHour.objects.values_list("hour", flat=True).distinct().get()
    assert hour.minute == hour.second == 0


@written
def test_a_call_costs_no_write_until_a_minute_has_passed(emulator, clock):
    client = get_client()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            client.identify({"email": "ann@example.com"}, {"n": 1})
        clock[0] += 59
        client.identify({"email": "ann@example.com"}, {"n": 2})
    assert writes_to_the_table(queries) == 0
    assert cio_calls._counts.pending() == 6

    clock[0] += 1  # a minute since the last write: the next call writes what was counted
    with CaptureQueriesContext(connection) as queries:
        client.identify({"email": "ann@example.com"}, {"n": 3})
    assert writes_to_the_table(queries) == 2  # the hour's row: an UPDATE that found none, then its INSERT
    assert counts() == {("track", "ok"): 7}
    assert cio_calls._counts.pending() == 0

    client.identify({"email": "ann@example.com"}, {"n": 3})
    with CaptureQueriesContext(connection) as queries:
        cio_calls.flush()
    assert writes_to_the_table(queries) == 1  # the row exists: one UPDATE adds to it
    assert counts() == {("track", "ok"): 8}

    clock[0] += 30 * 60  # the next hour: a row of its own
    client.identify({"email": "ann@example.com"}, {"n": 4})
    cio_calls.flush()
    assert sorted(CustomerIOCallHour.objects.values_list("hour", "count")) == [
        (datetime(2026, 12, 7, 10, tzinfo=UTC), 8),
        (datetime(2026, 12, 7, 11, tzinfo=UTC), 1),
    ]


@written
def test_counts_add_to_the_hours_row(emulator):
    client = get_client()
    client.identify({"email": "ann@example.com"}, {"n": 1})
    cio_calls.flush()
    client.identify({"email": "ann@example.com"}, {"n": 2})
    client.identify({"email": "ann@example.com"}, {"n": 3})
    cio_calls.flush()
    assert counts() == {("track", "ok"): 3}


@written
def test_nothing_is_written_inside_the_callers_transaction(emulator):
    client = get_client()
    with transaction.atomic():
        client.identify({"email": "ann@example.com"}, {"n": 1})
        cio_calls.flush()  # waits: a rollback would undo the count, and the row would stay locked
        assert counts() == {}
    cio_calls.flush()
    assert counts() == {("track", "ok"): 1}


@written
def test_no_answer_is_counted_as_an_error(emulator, settings):
    settings.CUSTOMERIO_TRACK_API_URL = "http://127.0.0.1:9"  # nothing listens: connection refused
    settings.CUSTOMERIO_MAX_RETRIES = 0
    with pytest.raises(CustomerIOError):
        get_client().identify({"email": "ann@example.com"}, {"n": 1})
    cio_calls.flush()
    assert counts() == {("track", "error"): 1}


@pytest.mark.parametrize(
    ("status", "answer"), [(200, "ok"), (204, "ok"), (404, "4xx"), (429, "429"), (503, "5xx"), (None, "error")]
)
def test_answer_kinds(status, answer):
    assert cio_calls.answer_kind(status) == answer


@written
def test_prune_deletes_hours_older_than_its_days():
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    CustomerIOCallHour.objects.create(hour=now - timedelta(days=31), api="app", answer="ok", count=1)
    CustomerIOCallHour.objects.create(hour=now - timedelta(days=29), api="app", answer="ok", count=1)
    out = io.StringIO()
    call_command("prune_webhook_data", "--days", "30", stdout=out)
    assert list(CustomerIOCallHour.objects.values_list("hour", flat=True)) == [now - timedelta(days=29)]
    assert "1 Customer.io call-count rows" in out.getvalue()
