"""Requests refused for a wrong or missing key cost no row each: they are counted per address and hour, summarised
once per address and hour in the activity log, throttled with 429 past WEBHOOK_REFUSED_PER_MINUTE — and a request
with the right key from the same address is never throttled."""

import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from users.models import ActivityLog
from webhooks.intake import refusals as refused
from webhooks.models import RefusedRequestWindow, WebhookDelivery

pytestmark = pytest.mark.django_db

# 10:00:10 UTC: 50 seconds to the end of the minute.
TEN_OCLOCK = datetime(2026, 12, 3, 10, 0, 10, tzinfo=UTC).timestamp()
BODY = json.dumps({"email": "ann@example.com"})


@pytest.fixture
def clock(monkeypatch):
    """The time webhooks.intake.refusals sees: clock.now (seconds since the epoch), moved by the test."""

    class Clock:
        now = TEN_OCLOCK

        def advance(self, seconds: float) -> None:
            self.now += seconds

    fake = Clock()
    monkeypatch.setattr(refused, "clock", lambda: fake.now)
    return fake


def send(client, address="203.0.113.9", *, key="wrong-key", action="update_tags", body=BODY, **extra):
    """A webhook request from `address` with `key` in the URL (None: no key at all)."""
    url = f"/?wpf_action={action}" + ("" if key is None else f"&access_key={key}")
    return client.post(url, body, content_type="application/json", REMOTE_ADDR=address, **extra)


def row_counts() -> dict:
    return {
        "deliveries": WebhookDelivery.objects.count(),
        "activity": ActivityLog.objects.count(),
        "refused": RefusedRequestWindow.objects.count(),
    }


@pytest.mark.parametrize("per_minute", [20, 0])
def test_two_thousand_wrong_key_requests_add_a_handful_of_rows(client, settings, per_minute):
    settings.WEBHOOK_REFUSED_PER_MINUTE = per_minute
    settings.TRUSTED_PROXIES = ["10.0.0.9"]
    before = row_counts()
    odd_requests = [
        {"key": "wrong-key"},
        {"key": None},
        {"key": "x", "action": "%00"},
        {"key": "%00", "action": "test&foo=%00"},
        {"key": "wrong", "body": "[" * 60_000},
        {"key": "wrong", "body": "x" * 100_000},
        {"key": "wrong", "body": b"\xff\xfe\x00"},
        {"key": "wrong", "HTTP_X_FORWARDED_FOR": "fe80::1%" + "x" * 300, "address": "10.0.0.9"},
        {"key": "wrong", "HTTP_X_CIO_DELIVERY_ID": "\x00" * 300, "HTTP_AUTHORIZATION": "Bearer \x00"},
        {"key": None, "HTTP_X_ACCESS_KEY": "not-it", "address": "2001:db8::7"},
    ]
    statuses = set()
    for n in range(2000):
        response = send(client, **odd_requests[n % len(odd_requests)])
        statuses.add(response.status_code)
    assert statuses == ({403, 429} if per_minute else {403})
    assert sum(row_counts().values()) - sum(before.values()) <= 6  # a minute may have ended meanwhile

    refused.flush()  # what the process's next refused request in a later minute (or its exit) writes
    after = row_counts()
    assert after["deliveries"] == before["deliveries"]
    assert after["refused"] - before["refused"] <= 6  # 3 addresses (a minute boundary may double them)
    assert after["activity"] - before["activity"] <= 6  # one summary per address and hour
    assert sum(RefusedRequestWindow.objects.values_list("count", flat=True)) == 2000


def test_the_21st_refused_request_in_a_minute_gets_429_while_the_right_key_gets_200(client, access_key, clock):
    for _ in range(19):
        assert send(client).status_code == 403
    for _ in range(5):  # the right key is never counted
        assert send(client, key=access_key, action="test").status_code == 200
    assert send(client).status_code == 403  # the 20th

    throttled = send(client)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "50"  # seconds to the end of the minute
    assert throttled.json() == {
        "error": "too_many_refused_requests",
        "detail": "Too many requests with a wrong or missing access key from this address: try again in 50 s.",
    }
    assert send(client, key=None).status_code == 429  # no key at all counts the same
    assert send(client, key=access_key, action="test").status_code == 200  # same address, right key
    assert send(client, address="203.0.113.10").status_code == 403  # another address has its own count

    clock.advance(50)  # the next minute
    assert send(client).status_code == 403
    refused.flush()
    row = RefusedRequestWindow.objects.get(address="203.0.113.9")
    assert (row.count, row.wrong_key, row.missing_key, row.throttled) == (23, 22, 1, 2)


def test_the_throttle_is_off_at_zero(client, settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 0
    assert {send(client).status_code for _ in range(40)} == {403}


def test_ipv6_addresses_are_counted_per_64(client, clock):
    for n in range(20):
        assert send(client, address=f"2001:db8:1:2::{n + 1:x}").status_code == 403
    assert send(client, address="2001:db8:1:2:ffff:ffff:ffff:9").status_code == 429  # the same /64
    assert send(client, address="2001:db8:1:3::1").status_code == 403  # the next /64
    refused.flush()
    assert dict(RefusedRequestWindow.objects.values_list("address", "count")) == {
        "2001:db8:1:2::/64": 21,
        "2001:db8:1:3::/64": 1,
    }


def test_a_trusted_proxys_forwarded_address_is_the_one_counted(client, settings, clock):
    settings.TRUSTED_PROXIES = ["10.0.0.9"]
    for n in range(21):
        answer = send(client, address="10.0.0.9", HTTP_X_FORWARDED_FOR=f"2001:db8:5:6::{n + 1}")
    assert answer.status_code == 429
    assert send(client, address="10.0.0.9", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 403
    refused.flush()
    assert set(RefusedRequestWindow.objects.values_list("address", flat=True)) == {"2001:db8:5:6::/64", "198.51.100.1"}


def test_one_activity_summary_per_address_per_hour(client, clock):
    for _ in range(5):
        send(client, address="198.51.100.1", action="add")
    for _ in range(3):
        send(client, address="198.51.100.2", key=None)
    assert row_counts() == {"deliveries": 0, "activity": 0, "refused": 0}  # nothing written within the minute

    clock.advance(60)  # 10:01: the first refusal writes 10:00's tallies
    for _ in range(4):
        send(client, address="198.51.100.1", action="test")
    assert RefusedRequestWindow.objects.count() == 2
    summaries = list(ActivityLog.objects.order_by("id").values_list("level", "message"))
    assert summaries == [
        (
            "warning",
            "Refused 5 webhook requests with a wrong access key from 198.51.100.1 in the minute from 10:00 UTC. "
            "More until 11:00 UTC are only counted under Webhooks → Refused requests.",
        ),
        (
            "warning",
            "Refused 3 webhook requests without an access key from 198.51.100.2 in the minute from 10:00 UTC. "
            "More until 11:00 UTC are only counted under Webhooks → Refused requests.",
        ),
    ]

    clock.advance(60)  # 10:02: 10:01's tally adds to the hour's row, with no new line
    send(client, address="198.51.100.1", key=None)
    refused.flush()
    assert ActivityLog.objects.count() == 2
    row = RefusedRequestWindow.objects.get(address="198.51.100.1")
    assert (row.count, row.wrong_key, row.missing_key) == (10, 9, 1)
    assert row.actions == ["add", "test", "update_tags"]
    assert row.window_start == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert row.first_seen == datetime(2026, 12, 3, 10, 0, 10, tzinfo=UTC)
    assert row.last_seen == datetime(2026, 12, 3, 10, 2, 10, tzinfo=UTC)

    clock.advance(3600)  # the next hour: a new row and its own line
    send(client, address="198.51.100.1")
    refused.flush()
    assert RefusedRequestWindow.objects.filter(address="198.51.100.1").count() == 2
    assert ActivityLog.objects.count() == 3
    assert ActivityLog.objects.latest("id").message.startswith("Refused 1 webhook request with a wrong access key")


def test_the_table_is_capped_with_an_overflow_row(client, settings, clock):
    settings.WEBHOOK_REFUSED_MAX_ROWS = 3
    settings.WEBHOOK_REFUSED_PER_MINUTE = 0
    for n in range(5):  # past the cap within one process's minute: the 4th and 5th go to its overflow tally
        for _ in range(2):
            send(client, address=f"192.0.2.{n + 1}")
    refused.flush()
    rows = {row.address: row.count for row in RefusedRequestWindow.objects.filter(overflow=False)}
    assert rows == {"192.0.2.1": 2, "192.0.2.2": 2, "192.0.2.3": 2}
    overflow = RefusedRequestWindow.objects.get(overflow=True)
    assert (overflow.address, overflow.count) == ("", 4)

    clock.advance(60)  # the table is full: new addresses join the overflow row, known ones keep theirs
    send(client, address="192.0.2.9")
    send(client, address="192.0.2.1")
    refused.flush()
    assert RefusedRequestWindow.objects.count() == 4
    assert RefusedRequestWindow.objects.get(overflow=True).count == 5
    assert RefusedRequestWindow.objects.get(address="192.0.2.1").count == 3
    overflow_lines = ActivityLog.objects.filter(message__contains="past the table's 3 rows")
    assert overflow_lines.count() == 1

    clock.advance(3600)  # a new hour: still full (the cap counts every address row), one overflow row per hour
    send(client, address="192.0.2.1")
    refused.flush()
    assert RefusedRequestWindow.objects.filter(overflow=False).count() == 3
    assert RefusedRequestWindow.objects.filter(overflow=True).count() == 2


def test_the_refused_requests_are_shown_read_only_in_the_admin(client, admin_client, clock):
    for _ in range(7):
        send(client, address="203.0.113.9", action="update_tags")
    refused.flush()
    page = admin_client.get(reverse("admin:webhooks_refusedrequestwindow_changelist"))
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ("203.0.113.9", "2026-12-03 10:00", '<td class="field-count">7</td>', "wrong key", "update_tags"):
        assert shown in text
    assert admin_client.get(reverse("admin:webhooks_refusedrequestwindow_add")).status_code == 403
    row = RefusedRequestWindow.objects.get()
    assert admin_client.post(reverse("admin:webhooks_refusedrequestwindow_delete", args=[row.pk])).status_code == 403


def test_prune_deletes_old_refused_request_rows(client, clock):
    send(client)
    refused.flush()
    old = RefusedRequestWindow.objects.get()
    RefusedRequestWindow.objects.filter(pk=old.pk).update(window_start=old.window_start - timedelta(days=400))
    clock.now = datetime.now(UTC).timestamp()
    send(client)
    refused.flush()
    call_command("prune_webhook_data", "--days", "30", stdout=io.StringIO())
    assert list(RefusedRequestWindow.objects.values_list("count", flat=True)) == [1]
    assert not RefusedRequestWindow.objects.filter(pk=old.pk).exists()


def test_an_unavailable_cache_leaves_requests_refused_unthrottled(client):
    unreachable = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    with override_settings(CACHES=unreachable):
        assert {send(client).status_code for _ in range(25)} == {403}


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_processes_writing_one_address_hour_at_once_share_its_row_and_its_one_summary():
    """Four processes' tallies for one address and minute, written at the same moment: counts add up."""
    minute = int(TEN_OCLOCK // 60)
    start = threading.Barrier(4)
    errors = []

    def write_one_processs_minute(n):
        try:
            tally = refused.Tally("203.0.113.9", minute, first_seen=TEN_OCLOCK + n, last_seen=TEN_OCLOCK + n)
            tally.wrong_key, tally.actions = 10 + n, [f"action{n}"]
            start.wait()
            refused.write([tally])
        except Exception as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write_one_processs_minute, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    row = RefusedRequestWindow.objects.get()
    assert row.count == 10 + 11 + 12 + 13
    assert sorted(row.actions) == ["action0", "action1", "action2", "action3"]
    assert row.first_seen == datetime(2026, 12, 3, 10, 0, 10, tzinfo=UTC)
    assert row.last_seen == datetime(2026, 12, 3, 10, 0, 13, tzinfo=UTC)
    assert ActivityLog.objects.count() == 1
