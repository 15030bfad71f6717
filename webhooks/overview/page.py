"""The overview page's content: the figures (figures.py) as charts and lines, labelled in the site's time zone."""

from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from .charts import Chart, stacked_bars
from .figures import HourlyCounts, read_figures

# A heartbeat older than this means the worker is not making progress (docs/operations.md says so too).
STALE_AFTER = 60


@dataclass
class ChartPair:
    """One measure over the last 24 hours and the last 7 days."""

    title: str
    day: Chart
    week: Chart


def overview_context() -> dict:
    figures = read_figures()
    zone = timezone.get_current_timezone_name()
    pairs = [
        _pair("deliveries", "Deliveries by outcome", figures.deliveries, "deliveries", zone, stacked=True),
        _pair("calls", "Customer.io calls and 429s", figures.calls, "calls", zone, stacked=False),
        _pair("refused", "Refused requests (wrong or missing key)", figures.refused, "requests", zone, stacked=False),
    ]
    return {
        "figures": figures,
        "chart_pairs": pairs,
        "time_zone": zone,
        "oldest_waiting": age_text(figures.oldest_waiting_seconds),
        "oldest_segment_change": age_text(figures.oldest_segment_change_seconds),
        "failing_contacts": [
            {"contact": contact, "link": deliveries_link(contact.contact_key)} for contact in figures.failing_contacts
        ],
        "workers": [
            {"worker": worker, "age": age_text(worker.age_seconds), "stale": worker.age_seconds > STALE_AFTER}
            for worker in figures.workers
        ],
        "stale_after": STALE_AFTER,
    }


def _pair(chart_id: str, title: str, counts: HourlyCounts, y_title: str, zone: str, *, stacked: bool) -> ChartPair:
    hours = [(_hour_label(hour), _hour_words(hour), values) for hour, values in counts.by_hour()]
    days = [(_day_label(day), f"{day:%A} {day.day} {day:%B}", values) for day, values in counts.by_day()]
    return ChartPair(
        title,
        stacked_bars(
            f"{chart_id}-24h",
            f"{title}, last 24 hours",
            hours,
            series=counts.series,
            x_title=f"hour ({zone})",
            y_title=y_title,
            label_every=3,
            stacked=stacked,
        ),
        stacked_bars(
            f"{chart_id}-7d",
            f"{title}, last 7 days",
            days,
            series=counts.series,
            x_title=f"day ({zone})",
            y_title=y_title,
            stacked=stacked,
        ),
    )


def _hour_label(hour: datetime) -> str:
    return f"{timezone.localtime(hour):%H:%M}"


def _hour_words(hour: datetime) -> str:
    local = timezone.localtime(hour)
    return f"{local:%a} {local.day} {local:%b, %H:%M}"


def _day_label(day: date) -> str:
    return f"{day:%a} {day.day}"


def deliveries_link(contact_key: str) -> str:
    """The delivery list filtered to one contact's deliveries (all of them, newest first)."""
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    return f"{changelist}?{urlencode({'contact_key': contact_key})}"


def age_text(seconds: float | None) -> str:
    """'42 s', '3 min 5 s', '2 h 10 min', '3 d 4 h'; '-' for none."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
