"""The admin's Overview page (/admin/webhooks/overview/): its numbers are the database's, it is for staff only, and it
costs the same number of queries whatever the number of rows."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from users.models import SegmentChange, Tag, User
from webhooks.models import CustomerIOCallHour, RefusedRequestWindow, WebhookDelivery, WorkerHeartbeat
from webhooks.overview.figures import forget_settled, read_figures

URL = "/admin/webhooks/overview/"
Status = WebhookDelivery.Status


def this_hour():
    return timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def deliveries(status, count, *, hours_ago=0, contact="", minutes=5):
    """`count` deliveries received `hours_ago` hours before this hour's start plus `minutes`."""
    received_at = this_hour() - timedelta(hours=hours_ago) + timedelta(minutes=minutes)
    rows = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                action="update", contact=contact, contact_key=f"email:{contact}" if contact else "", status=status
            )
            for _ in range(count)
        ]
    )
    # received_at is auto_now_add: set afterwards.
    WebhookDelivery.objects.filter(pk__in=[row.pk for row in rows]).update(received_at=received_at)
    return rows


@pytest.fixture
def known_rows(db):
    now = timezone.now()
    deliveries(Status.SUCCEEDED, 5)
    deliveries(Status.SUCCEEDED, 2, hours_ago=3)
    deliveries(Status.SKIPPED, 1, hours_ago=3)
    deliveries(Status.FAILED, 2, hours_ago=1, contact="fay@example.com")
    deliveries(Status.RETRYING, 3, contact="rita@example.com")
    deliveries(Status.QUEUED, 4)
    deliveries(Status.INVALID, 1, hours_ago=2)
    deliveries(Status.SUCCEEDED, 7, hours_ago=24 * 3)  # in the week, not in the last 24 hours
    deliveries(Status.SUCCEEDED, 9, hours_ago=24 * 9)  # neither
    hour = this_hour()
    CustomerIOCallHour.objects.bulk_create(
        [
            CustomerIOCallHour(hour=hour, api="app", answer="ok", count=40),
            CustomerIOCallHour(hour=hour, api="app", answer="429", count=6),
            CustomerIOCallHour(hour=hour - timedelta(hours=5), api="track", answer="ok", count=10),
            CustomerIOCallHour(hour=hour - timedelta(hours=5), api="track", answer="5xx", count=2),
            CustomerIOCallHour(hour=hour - timedelta(days=2), api="app", answer="ok", count=100),
        ]
    )
    RefusedRequestWindow.objects.create(
        window_start=hour, address="203.0.113.9", count=12, wrong_key=12, throttled=4, first_seen=now, last_seen=now
    )
    RefusedRequestWindow.objects.create(
        window_start=hour - timedelta(days=4), address="203.0.113.9", count=3, missing_key=3, first_seen=now,
        last_seen=now,
    )  # fmt: skip
    WorkerHeartbeat.objects.create(worker_id="webhook-alive", host="web1", pid=11, started_at=now, seen_at=now)
    WorkerHeartbeat.objects.create(
        worker_id="webhook-gone", host="web2", started_at=now - timedelta(hours=2), seen_at=now - timedelta(hours=1)
    )
    owed = [User.objects.create_user(f"u{n}", f"u{n}@example.com") for n in range(3)]
    User.objects.filter(pk__in=[owed[0].pk, owed[1].pk]).update(password_return_due=True)
    tag = Tag.objects.create(segment_id=1, name="VIP")
    SegmentChange.objects.create(user=owed[0], tag=tag, action="add")
    SegmentChange.objects.create(user=owed[1], tag=tag, action="add", sent_at=now)
    return now


def test_the_figures_are_the_databases(known_rows):
    figures = read_figures()
    day = this_hour() - timedelta(hours=23)
    in_day = WebhookDelivery.objects.filter(received_at__gte=day)
    assert (
        figures.deliveries.last_24_hours()
        == {
            "succeeded": in_day.filter(status=Status.SUCCEEDED).count(),
            "skipped": in_day.filter(status=Status.SKIPPED).count(),
            "failed": in_day.filter(status=Status.FAILED).count(),
            "invalid": in_day.filter(status=Status.INVALID).count(),
            "waiting": in_day.filter(status__in=[Status.QUEUED, Status.RETRYING]).count(),
        }
        == {"succeeded": 7, "skipped": 1, "failed": 2, "invalid": 1, "waiting": 7}
    )
    week = dict(figures.deliveries.by_day())
    assert sum(values["succeeded"] for values in week.values()) == 14  # 5 + 2 + 7, not the 9 of 9 days ago
    assert figures.calls.last_24_hours() == {"calls": 58, "429s": 6}
    assert sum(values["calls"] for _, values in figures.calls.by_day()) == 158
    assert figures.refused.last_24_hours() == {"refused": 12, "answered 429": 4}
    assert sum(values["refused"] for _, values in figures.refused.by_day()) == 15
    assert figures.backlog.waiting == 7
    assert [(c.contact, c.retrying, c.failed) for c in figures.failing_contacts] == [
        ("rita@example.com", 3, 0),
        ("fay@example.com", 0, 2),
    ]
    assert figures.failing_contacts_total == 2
    assert [worker.worker_id for worker in figures.workers] == ["webhook-alive", "webhook-gone"]
    assert figures.password_returns_owed == 2
    assert figures.segment_changes.count == 1


def shown(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert match, element_id
    return match.group(1).strip()


def test_the_page_shows_the_databases_numbers(admin_client, known_rows):
    response = admin_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert shown(html, "queue-waiting") == "7"
    assert re.fullmatch(r"\d+ min \d+ s|\d+ s", shown(html, "queue-oldest"))
    assert shown(html, "failing-contacts-total") == "2"
    assert shown(html, "password-returns-owed") == "2"
    assert shown(html, "segment-changes-waiting") == "1"
    assert 'data-series="succeeded">succeeded 7<' in html  # the 24-hour chart's total
    assert 'data-series="succeeded">succeeded 14<' in html  # the 7-day chart's
    assert 'data-series="429s">429s 6<' in html
    assert 'data-series="refused">refused 15<' in html
    # Drawn on the server: SVG with its title, description and a tooltip per bar.
    assert html.count("<svg viewBox=") == 6
    assert '<title id="deliveries-24h-title">Deliveries by outcome, last 24 hours</title>' in html
    assert "<script" not in html.split('id="content-main"')[1]
    assert "webhook-gone" in html and "overview-stale" in html


def test_a_failing_contacts_link_lists_their_deliveries(admin_client, known_rows):
    html = admin_client.get(URL).content.decode()
    link = re.search(r'<a href="([^"]+)">rita@example.com</a>', html).group(1)
    assert link == "/admin/webhooks/webhookdelivery/?contact_key=email%3Arita%40example.com"
    listed = admin_client.get(link.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert list(listed.context["cl"].queryset.values_list("contact", flat=True)) == ["rita@example.com"] * 3


def test_the_admin_index_lists_the_overview_under_webhooks(admin_client):
    html = admin_client.get("/admin/").content.decode()
    webhooks_app = html.split('class="app-webhooks')[1].split("</table>")[0]
    assert f'<a href="{URL}"' in webhooks_app
    assert ">Overview<" in webhooks_app


@pytest.mark.django_db
def test_anyone_but_staff_is_sent_to_the_login_page(client, django_user_model):
    assert client.get(URL).url == f"/admin/login/?next={URL}"
    user = django_user_model.objects.create_user("member", "member@example.com", "pw")
    client.force_login(user)
    assert client.get(URL).url == f"/admin/login/?next={URL}"


@pytest.mark.django_db
def test_staff_need_the_view_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_overview"))
    assert client.get(URL).status_code == 200


def test_the_number_of_queries_is_the_same_whatever_the_rows(admin_client, django_assert_num_queries, db):
    admin_client.get(URL)  # the session's first read
    # The session and the user (2), the page's figures (9).
    with django_assert_num_queries(12):
        assert admin_client.get(URL).status_code == 200
    for hours_ago in range(0, 24 * 7, 5):
        deliveries(Status.SUCCEEDED, 3, hours_ago=hours_ago)
        deliveries(Status.FAILED, 1, hours_ago=hours_ago, contact=f"c{hours_ago}@example.com")
        CustomerIOCallHour.objects.create(hour=this_hour() - timedelta(hours=hours_ago), api="app", answer="ok")
    deliveries(Status.RETRYING, 2, contact="r@example.com")
    now = timezone.now()
    for n in range(12):
        WorkerHeartbeat.objects.create(worker_id=f"w{n}", started_at=now, seen_at=now)
    with django_assert_num_queries(12):
        assert admin_client.get(URL).status_code == 200  # the settled hours from the cache
    forget_settled()
    with django_assert_num_queries(12):
        assert admin_client.get(URL).status_code == 200  # every hour counted


def test_settled_hours_are_counted_again_every_few_minutes(db, settings):
    deliveries(Status.SUCCEEDED, 2, hours_ago=5)
    assert read_figures().deliveries.last_24_hours()["succeeded"] == 2
    deliveries(Status.SUCCEEDED, 1, hours_ago=5)  # an hour that ended more than 2 hours ago: cached
    deliveries(Status.SUCCEEDED, 4, hours_ago=1)  # a recent hour: counted on every view
    assert read_figures().deliveries.last_24_hours()["succeeded"] == 2 + 4
    forget_settled()  # as when the cached counts expire (SETTLED_CACHE_SECONDS)
    assert read_figures().deliveries.last_24_hours()["succeeded"] == 3 + 4


def test_an_empty_site_draws_empty_charts(admin_client, db):
    html = admin_client.get(URL).content.decode()
    assert shown(html, "queue-waiting") == "0"
    assert shown(html, "queue-oldest") == "-"
    assert "No worker has ever run" in html


def test_hours_are_labelled_in_the_sites_time_zone(admin_client, db, settings):
    settings.TIME_ZONE = "Asia/Kolkata"  # UTC+5:30
    deliveries(Status.SUCCEEDED, 1)
    html = admin_client.get(URL).content.decode()
    local_start = timezone.localtime(this_hour(), timezone=timezone.get_fixed_timezone(330))
    assert f"{local_start:%a} {local_start.day} {local_start:%b, %H:%M}: succeeded 1" in html
    assert "hour (Asia/Kolkata)" in html


def test_rows_of_nine_days_ago_are_outside_the_week(db):
    deliveries(Status.SUCCEEDED, 1, hours_ago=24 * 8)
    figures = read_figures(datetime.now(UTC))
    assert sum(values["succeeded"] for _, values in figures.deliveries.by_day()) == 0


def test_without_a_cache_every_hour_is_counted(db, monkeypatch):
    from webhooks.overview import figures

    class Down:
        def get(self, *args, **kwargs):
            raise ConnectionError("cache down")

        set = get

    deliveries(Status.SUCCEEDED, 2, hours_ago=5)
    monkeypatch.setattr(figures, "cache", Down())
    assert read_figures().deliveries.last_24_hours()["succeeded"] == 2
