"""The admin's side of message events: the read-only list and its filters, the reactions' form, a user's timeline and
email deliverability, and what the webhook settings page says about the reporting webhook and the allowlist."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from users.models import Tag, User
from webhooks.models import MessageEvent, MessageReaction
from wpfusion_site.allowed_networks import parse

pytestmark = pytest.mark.django_db

EVENTS_URL = reverse("admin:webhooks_messageevent_changelist")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def stored(n, user=None, **fields):
    values = {
        "event_id": f"evt-{n}",
        "metric": "delivered",
        "channel": "email",
        "occurred_at": START + timedelta(minutes=n),
        "recipient": "ann@example.com",
        "email": "ann@example.com",
        "campaign_id": 12,
        "user": user,
        **fields,
    }
    return MessageEvent.objects.create(**values)


def listed(admin_client, query="") -> list[str]:
    response = admin_client.get(EVENTS_URL + query)
    assert response.status_code == 200
    return [event.event_id for event in response.context["cl"].result_list]


def test_the_events_list_filters_by_metric_channel_journey_date_and_user(admin_client):
    ann = User.objects.create_user(username="ann", email="ann@example.com", password="x")
    stored(1, ann, metric="clicked", link="https://example.com/a")
    stored(2, channel="sms", recipient="+15555550100", campaign_id=None, broadcast_id=9)
    stored(3, ann, metric="bounced", occurred_at=START - timedelta(days=400), failure="550 gone")

    assert listed(admin_client) == ["evt-3", "evt-2", "evt-1"]  # newest received first
    assert listed(admin_client, "?metric=clicked") == ["evt-1"]
    assert listed(admin_client, "?channel=sms") == ["evt-2"]
    assert listed(admin_client, "?journey=broadcast:9") == ["evt-2"]
    assert listed(admin_client, "?journey=campaign:12") == ["evt-3", "evt-1"]
    # As the date filter's own links ask ("This year" and the like): aware times.
    year = "?occurred_at__gte=2026-01-01+00:00:00%2B00:00&occurred_at__lt=2027-01-01+00:00:00%2B00:00"
    assert listed(admin_client, year) == ["evt-2", "evt-1"]
    assert listed(admin_client, "?user__isempty=1") == ["evt-2"]
    assert listed(admin_client, f"?user={ann.pk}") == ["evt-3", "evt-1"]

    page = admin_client.get(EVENTS_URL).content.decode()
    for shown in ("campaign 12", "broadcast 9", "https://example.com/a", "550 gone", "+15555550100"):
        assert shown in page


def test_events_are_read_only(admin_client):
    event = stored(1)
    assert admin_client.get(reverse("admin:webhooks_messageevent_add")).status_code == 403
    page = admin_client.get(reverse("admin:webhooks_messageevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert b'name="metric"' not in page.content  # shown, not editable
    assert admin_client.post(reverse("admin:webhooks_messageevent_delete", args=[event.pk])).status_code == 403


def test_a_user_s_page_shows_their_newest_events_and_links_to_all(admin_client):
    ann = User.objects.create_user(username="ann", email="ann@example.com", password="x")
    for n in range(60):
        stored(n, ann, metric="opened" if n % 2 else "delivered")
    page = admin_client.get(reverse("admin:users_user_change", args=[ann.pk])).content.decode()
    timeline = page[page.index('class="message-timeline"') :]
    assert timeline.count("<tr><td>") == 50
    newest, oldest_shown = f"{START + timedelta(minutes=59):%Y-%m-%d %H:%M}", f"{START + timedelta(minutes=10):%H:%M}"
    assert timeline.index(newest) < timeline.index(oldest_shown)
    assert "The newest 50 of 60 events." in timeline
    assert f'href="{EVENTS_URL}?user={ann.pk}"' in timeline


def test_a_user_without_events_says_so(admin_client):
    bob = User.objects.create_user(username="bob", email="bob@example.com", password="x")
    page = admin_client.get(reverse("admin:users_user_change", args=[bob.pk])).content.decode()
    assert "No message events from Customer.io yet." in page


def test_the_admin_ticks_and_unticks_email_undeliverable(admin_client, admin_user):
    ann = User.objects.create_user(username="ann", email="ann@example.com", password="x")
    url = reverse("admin:users_user_change", args=[ann.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update({"role": ann.role_id, "email_undeliverable": "on", "user_tags-TOTAL_FORMS": 0})
    data.update({"user_tags-INITIAL_FORMS": 0, "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    data.pop("last_login", None)
    data.pop("groups", None)
    data.pop("user_permissions", None)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    ann.refresh_from_db()
    assert ann.email_undeliverable
    assert ann.email_undeliverable_reason == f"Marked by {admin_user.username} in the admin"
    assert ann.email_undeliverable_at is not None

    del data["email_undeliverable"]
    assert admin_client.post(url, data).status_code == 302
    ann.refresh_from_db()
    assert (ann.email_undeliverable, ann.email_undeliverable_at, ann.email_undeliverable_reason) == (False, None, "")


def test_reactions_need_a_tag_to_apply_and_refuse_data_driven_segments(admin_client):
    vip = Tag.objects.create(segment_id=1, name="VIP", kind=Tag.Kind.MANUAL)
    active = Tag.objects.create(segment_id=3, name="Active customers", kind=Tag.Kind.DATA_DRIVEN)
    url = reverse("admin:webhooks_messagereaction_add")
    base = {"metric": "clicked", "channel": "", "kind": "apply_tag", "enabled": "on"}

    no_tag = admin_client.post(url, base)
    assert no_tag.context["adminform"].form.errors == {"tag": ["Choose the tag to apply or remove."]}
    data_driven = admin_client.post(url, {**base, "tag": active.pk})
    assert data_driven.context["adminform"].form.errors == {
        "tag": ['"Active customers" is a data-driven segment: Customer.io decides its members by its conditions.']
    }
    assert admin_client.post(url, {**base, "tag": vip.pk}).status_code == 302
    assert str(MessageReaction.objects.get()) == "On any clicked: apply a tag VIP"
    undeliverable = {**base, "metric": "bounced", "kind": "mark_undeliverable", "tag": vip.pk}
    assert admin_client.post(url, undeliverable).context["adminform"].form.errors == {
        "tag": ["Marking the email undeliverable takes no tag."]
    }
    sms = {**undeliverable, "tag": "", "channel": "sms"}
    assert admin_client.post(url, sms).context["adminform"].form.errors == {
        "channel": ["Only email events say whether mail to the address arrives: choose email (or any)."]
    }
    assert admin_client.post(url, {**sms, "channel": "email"}).status_code == 302


def test_the_settings_page_says_whether_the_allowlist_and_the_reporting_webhook_are_on(admin_client, settings):
    url = reverse("admin:settings_app_webhooksettings_change")
    settings.SITE_BASE_URL = "https://mydomain.com"
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = []
    page = admin_client.get(url).content.decode()
    assert "<strong>Off:</strong> journey webhooks are accepted from any address" in page
    assert "<strong>Off:</strong> set <code>CUSTOMERIO_REPORTING_SIGNING_KEYS</code>" in page
    assert 'value="https://mydomain.com/webhooks/customerio/reporting/"' in page

    settings.WEBHOOK_ALLOWED_NETWORKS = parse("customerio-us,10.0.0.0/8")
    settings.CUSTOMERIO_REPORTING_SIGNING_KEYS = ["key-one", "key-two"]
    page = admin_client.get(url).content.decode()
    assert "accepted only from customerio-us (14 addresses), 10.0.0.0/8" in page
    assert "<strong>On</strong>, with 2 signing keys" in page
    assert "key-one" not in page and "key-two" not in page
