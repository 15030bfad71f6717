"""What the admin overview shows, read from the database in a fixed number of aggregate queries whatever the number
of rows: deliveries, Customer.io calls and refused requests per hour over the last 7 days (one GROUP BY each, the
hour truncated by the database), the queue now, failing contacts, worker heartbeats, and the users' outboxes.

Hours are UTC hours (refused requests and Customer.io calls are stored per UTC hour); the page labels them in the
site's time zone.

Deliveries are the one big table. Counting 7 days of them reads millions of index entries (a second or more on a
busy 2-core machine, see docs/performance.md, "The admin overview"), so the hours that ended more than SETTLED ago
are counted at most once every SETTLED_CACHE_SECONDS and kept in Django's cache (shared by every process with
REDIS_URL); each page view counts only the recent hours. Either way it is one query. A delivery that changes its
outcome hours after it arrived (a retry succeeding late, a replay) shows in the chart within SETTLED_CACHE_SECONDS.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.core.cache import cache
from django.db.models import CharField, Count, F, Func, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from users.services.accounts.passwords import password_returns_owed
from users.services.outbox import waiting_entries
from users.services.segment_changes import Waiting, waiting_changes

from ..health import Backlog, queue_backlog
from ..models import CustomerIOCallHour, RefusedRequestWindow, WebhookDelivery, WorkerHeartbeat

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status
DAYS = 7
HOURS = 24
FAILING_CONTACTS_SHOWN = 20
WORKERS_SHOWN = 10
# Hours of deliveries counted from the cache: those that ended more than SETTLED ago (most of their deliveries are
# finished), recounted at most every SETTLED_CACHE_SECONDS.
SETTLED = timedelta(hours=2)
SETTLED_CACHE_SECONDS = 300
SETTLED_KEY = "webhooks:overview:settled-deliveries"

# The deliveries chart's outcomes, in stacking order; every status not finished yet counts as "waiting".
OUTCOMES = ["succeeded", "skipped", "failed", "invalid", "waiting"]
_OUTCOME_OF = {
    Status.SUCCEEDED: "succeeded",
    Status.SKIPPED: "skipped",
    Status.FAILED: "failed",
    Status.INVALID: "invalid",
}
# Customer.io calls: all of them, and those answered 429 (rate limited).
CALL_SERIES = ["calls", "429s"]
REFUSED_SERIES = ["refused", "answered 429"]


@dataclass
class HourlyCounts:
    """Counts per UTC hour start and series name, with the hours of the last 24 hours and days of the last 7."""

    series: list[str]
    hours: list[datetime]  # the last 24 hour starts, oldest first (the last one is the current, partial hour)
    days: list[date]  # the last 7 days in the site's time zone, oldest first (the last one is today)
    counts: dict[datetime, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, hour: datetime, name: str, count: int) -> None:
        bucket = self.counts[hour]
        bucket[name] = bucket.get(name, 0) + count

    def by_hour(self) -> list[tuple[datetime, dict[str, int]]]:
        return [(hour, self._full(self.counts.get(hour, {}))) for hour in self.hours]

    def by_day(self) -> list[tuple[date, dict[str, int]]]:
        totals = {day: dict.fromkeys(self.series, 0) for day in self.days}
        for hour, values in self.counts.items():
            day = timezone.localtime(hour).date()
            if day in totals:
                for name, count in values.items():
                    totals[day][name] += count
        return list(totals.items())

    def last_24_hours(self) -> dict[str, int]:
        totals = dict.fromkeys(self.series, 0)
        for _, values in self.by_hour():
            for name, count in values.items():
                totals[name] += count
        return totals

    def _full(self, values: dict[str, int]) -> dict[str, int]:
        return {name: values.get(name, 0) for name in self.series}


@dataclass
class FailingContact:
    contact: str
    contact_key: str
    retrying: int
    failed: int
    last_received_at: datetime


@dataclass
class Worker:
    worker_id: str
    host: str
    pid: int | None
    started_at: datetime
    seen_at: datetime
    age_seconds: float


@dataclass
class Figures:
    now: datetime
    deliveries: HourlyCounts
    calls: HourlyCounts
    refused: HourlyCounts
    backlog: Backlog
    failing_contacts: list[FailingContact]
    failing_contacts_total: int
    workers: list[Worker]
    password_returns_owed: int
    segment_changes: Waiting
    outbox: Waiting

    @property
    def oldest_waiting_seconds(self) -> float | None:
        return self.backlog.oldest_age(self.now)

    @property
    def oldest_segment_change_seconds(self) -> float | None:
        oldest = self.segment_changes.oldest_created_at
        return (self.now - oldest).total_seconds() if oldest else None


def read_figures(now: datetime | None = None) -> Figures:
    """Everything the overview shows: ten queries."""
    now = now or timezone.now()
    hours, days, since = _periods(now)
    failing, failing_total = failing_contacts(now)
    return Figures(
        now=now,
        deliveries=deliveries_per_hour(since, hours, days, now),
        calls=calls_per_hour(since, hours, days),
        refused=refused_per_hour(since, hours, days),
        backlog=queue_backlog(),
        failing_contacts=failing,
        failing_contacts_total=failing_total,
        workers=workers(now),
        password_returns_owed=password_returns_owed(),
        segment_changes=waiting_changes(),
        outbox=waiting_entries(),
    )


def _periods(now: datetime) -> tuple[list[datetime], list[date], datetime]:
    """The last 24 UTC hour starts, the last 7 local days, and the start of the oldest of those days."""
    current_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [current_hour - timedelta(hours=back) for back in range(HOURS - 1, -1, -1)]
    today = timezone.localdate(now)
    days = [today - timedelta(days=back) for back in range(DAYS - 1, -1, -1)]
    first_midnight = timezone.make_aware(datetime.combine(days[0], datetime.min.time()))
    # From the start of the UTC hour holding the first local midnight (a zone half an hour off UTC included).
    since = min(first_midnight.astimezone(UTC).replace(minute=0, second=0, microsecond=0), hours[0])
    return hours, days, since


class UTCHour(TruncHour):
    """The UTC hour a time falls in (TruncHour in UTC), computed as cheaply as each database allows: on PostgreSQL
    date_bin() (no time zone conversion per row, twice as fast as date_trunc(... AT TIME ZONE 'UTC')); on SQLite the
    first 13 characters of the column's UTC text ("2026-12-07 14:05:09.123456"), where Django's truncation would call
    a Python function for each row."""

    def __init__(self, expression, **extra):
        super().__init__(expression, tzinfo=UTC, **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.lhs)
        return f"date_bin('1 hour', {sql}, TIMESTAMPTZ '2000-01-01 00:00:00+00')", params

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.lhs)
        return f"(substr({sql}, 1, 13) || ':00:00')", params


def deliveries_per_hour(since: datetime, hours: list[datetime], days: list[date], now: datetime) -> HourlyCounts:
    """Deliveries received per hour, by outcome: one query, over the recent hours only while the settled ones are
    cached (see the module's docstring)."""
    counts = HourlyCounts(OUTCOMES, hours, days)
    settled_before = (now - SETTLED).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    settled = _cached_settled(since, settled_before)
    if settled is None:
        rows = list(deliveries_query(since))
        settled = [row for row in rows if row["hour"] < settled_before]
        _cache_settled(since, settled_before, settled)
        recent = [row for row in rows if row["hour"] >= settled_before]
    else:
        recent = deliveries_query(settled_before)
    for row in [*settled, *recent]:
        for name in OUTCOMES:
            counts.add(row["hour"], name, row[name])
    return counts


def deliveries_query(since: datetime):
    """One GROUP BY hour, counting each outcome with a FILTER: grouping by hour alone lets SQLite walk the
    (received_at, status) index instead of sorting by status, and PostgreSQL read that index alone."""
    outcomes = {name: Count("pk", filter=Q(status=status)) for status, name in _OUTCOME_OF.items()}
    outcomes["waiting"] = Count("pk", filter=~Q(status__in=list(_OUTCOME_OF)))
    return (
        WebhookDelivery.objects.filter(received_at__gte=since)
        .annotate(hour=UTCHour("received_at"))
        .values("hour")
        .annotate(**outcomes)
        .order_by()
    )


def _cached_settled(since: datetime, until: datetime) -> list[dict] | None:
    try:
        cached = cache.get(SETTLED_KEY)
    except Exception as error:  # the cache is down: count everything instead
        logger.warning("Overview: the cache is unavailable (%s); counting every hour", type(error).__name__)
        return None
    if not cached or cached.get("since") != since or cached.get("until") != until:
        return None
    return cached["rows"]


def _cache_settled(since: datetime, until: datetime, rows: list[dict]) -> None:
    try:
        cache.set(SETTLED_KEY, {"since": since, "until": until, "rows": rows}, SETTLED_CACHE_SECONDS)
    except Exception as error:
        logger.warning("Overview: could not cache the settled hours (%s)", type(error).__name__)


def forget_settled() -> None:
    """Drop the cached hours (tests start from nothing)."""
    cache.delete(SETTLED_KEY)


def calls_per_hour(since: datetime, hours: list[datetime], days: list[date]) -> HourlyCounts:
    """Customer.io calls per hour (both APIs), and those answered 429."""
    counts = HourlyCounts(CALL_SERIES, hours, days)
    rows = (
        CustomerIOCallHour.objects.filter(hour__gte=since)
        .values_list("hour")
        .annotate(calls=Sum("count"), limited=Sum("count", filter=Q(answer=CustomerIOCallHour.Answer.RATE_LIMITED)))
        .order_by()
    )
    for hour, calls, limited in rows:
        counts.add(hour, "calls", calls or 0)
        counts.add(hour, "429s", limited or 0)
    return counts


def refused_per_hour(since: datetime, hours: list[datetime], days: list[date]) -> HourlyCounts:
    """Requests refused for their key per hour, and those of them answered 429 (the refused-request throttle)."""
    counts = HourlyCounts(REFUSED_SERIES, hours, days)
    rows = (
        RefusedRequestWindow.objects.filter(window_start__gte=since)
        .values_list("window_start")
        .annotate(refused=Sum("count"), throttled=Sum("throttled"))
        .order_by()
    )
    for hour, refused, throttled in rows:
        counts.add(hour, "refused", refused or 0)
        counts.add(hour, "answered 429", throttled or 0)
    return counts


class NotIndexed(Func):
    """A column as a plain value. Grouped by contact_key itself, SQLite walks that whole index (millions of rows) to
    save a sort of the few failing ones; `+contact_key` is SQLite's way to say "not by this index"."""

    template = "%(expressions)s"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, template="(+%(expressions)s)", **extra_context)


def failing_contacts(now: datetime) -> tuple[list[FailingContact], int]:
    """Contacts with deliveries waiting for a retry, or failed for good in the last 24 hours: the most recent ones
    first, and how many there are in all (two queries)."""
    failing = (
        WebhookDelivery.objects.filter(
            Q(status=Status.RETRYING) | Q(status=Status.FAILED, received_at__gte=now - timedelta(hours=HOURS))
        )
        .exclude(contact_key="")
        .values(key=NotIndexed(F("contact_key")))
    )
    total = failing.annotate(n=Count("*")).order_by().count()
    rows = failing.annotate(
        contact=Max("contact"),
        retrying=Count("pk", filter=Q(status=Status.RETRYING)),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        last=Max("received_at"),
    ).order_by("-last", "key")[:FAILING_CONTACTS_SHOWN]
    contacts = [FailingContact(row["contact"], row["key"], row["retrying"], row["failed"], row["last"]) for row in rows]
    return contacts, total


def workers(now: datetime) -> list[Worker]:
    """The workers seen most recently, with their heartbeat's age."""
    rows = WorkerHeartbeat.objects.order_by("-seen_at", "worker_id")[:WORKERS_SHOWN]
    return [
        Worker(row.worker_id, row.host, row.pid, row.started_at, row.seen_at, (now - row.seen_at).total_seconds())
        for row in rows
    ]
