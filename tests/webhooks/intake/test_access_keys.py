"""Access keys: several valid at once during a rotation's grace period, sent in a header or the URL, and each
delivery's key shown by fingerprint only."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from settings_app import access_keys
from settings_app.models import WebhookSettings
from users.models import ActivityLog
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

BODY = json.dumps({"email": "ann@example.com"})


def call(client, key, *, header=None, action="test"):
    """The webhook with the key in the URL (header=None), or in `Authorization: Bearer` / `X-Access-Key`."""
    if header is None:
        return client.post(f"/?wpf_action={action}&access_key={key}", BODY, content_type="application/json")
    headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-Access-Key": key}
    return client.post(f"/?wpf_action={action}", BODY, content_type="application/json", headers=headers)


def expire_previous_keys():
    """The grace period runs out (as if a day went by)."""
    site = WebhookSettings.load()
    past = (timezone.now() - timedelta(seconds=1)).isoformat()
    site.previous_access_keys = [{**entry, "valid_until": past} for entry in site.previous_access_keys]
    site.save()


@pytest.mark.parametrize("header", ["bearer", "x-access-key", None])
def test_the_key_works_in_either_header_and_in_the_url(client, access_key, header):
    response = call(client, access_key, header=header)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "action": "test"}
    assert call(client, access_key + "x", header=header).status_code == 403


def test_a_bearer_header_with_another_scheme_is_not_a_key(client, access_key):
    response = client.post(
        "/?wpf_action=test", BODY, content_type="application/json", headers={"Authorization": f"Basic {access_key}"}
    )
    assert response.status_code == 403


def test_regenerate_keeps_the_old_key_valid_for_the_grace_period_then_refuses_it(client, admin_client, access_key):
    response = admin_client.post(reverse("admin:settings_app_webhooksettings_regenerate"))
    assert response.status_code == 302
    new_key = WebhookSettings.load().access_key
    assert new_key != access_key
    assert call(client, access_key).status_code == 200  # journeys not yet updated keep working
    assert call(client, new_key, header="bearer").status_code == 200
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    previous = access_keys.previous_keys(WebhookSettings.load())[0]
    assert previous.valid_until - timezone.now() > timedelta(hours=23, minutes=59)
    assert f"Previous key <code>{previous.fingerprint}</code> still works until" in page
    assert access_key not in page  # the old key itself is never shown again
    expire_previous_keys()
    assert call(client, access_key).status_code == 403
    assert call(client, new_key).status_code == 200


def test_the_end_grace_button_stops_the_old_key_at_once(client, admin_client, access_key):
    admin_client.post(reverse("admin:settings_app_webhooksettings_regenerate"))
    assert call(client, access_key).status_code == 200
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert 'id="end-grace"' in page
    response = admin_client.post(reverse("admin:settings_app_webhooksettings_end_grace"))
    assert response.status_code == 302
    assert call(client, access_key).status_code == 403
    assert ActivityLog.objects.filter(message__contains="ended the grace period of 1 previous").exists()
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert "No previous key is valid." in page


def test_rotate_access_key_command_prints_the_new_key_and_the_old_keys_expiry(client, access_key):
    out = io.StringIO()
    call_command("rotate_access_key", "--grace", "2", stdout=out)
    new_key = WebhookSettings.load().access_key
    lines = out.getvalue().splitlines()
    assert lines[0] == f"New access key: {new_key}"
    expiry = access_keys.previous_keys(WebhookSettings.load())[0].valid_until
    assert lines[1] == f"The previous key stops working: {expiry.isoformat(timespec='seconds')}"
    assert timedelta(hours=1, minutes=59) < expiry - timezone.now() <= timedelta(hours=2)
    assert call(client, access_key).status_code == 200
    out = io.StringIO()
    call_command("rotate_access_key", "--end-grace", stdout=out)
    assert "Previous access keys ended: 1" in out.getvalue()
    assert call(client, access_key).status_code == 403
    assert call(client, new_key).status_code == 200


def test_rotating_twice_keeps_both_previous_keys_until_their_own_expiry(client, access_key):
    first_new, _ = access_keys.rotate(WebhookSettings.load())
    access_keys.rotate(WebhookSettings.load(), timedelta(hours=1))
    assert call(client, access_key).status_code == 200
    assert call(client, first_new).status_code == 200
    call_command("rotate_access_key", "--grace", "0", stdout=io.StringIO())
    assert call(client, access_key).status_code == 200  # earlier grace periods are kept
    assert len(access_keys.previous_keys(WebhookSettings.load())) == 2


def test_every_valid_key_is_compared_even_after_a_match(monkeypatch, access_key):
    access_keys.rotate(WebhookSettings.load())
    access_keys.rotate(WebhookSettings.load())
    compared = []
    real = access_keys.constant_time_compare
    monkeypatch.setattr(access_keys, "constant_time_compare", lambda a, b: compared.append(b) or real(a, b))
    site = WebhookSettings.load()
    assert access_keys.match_access_key(site.access_key, site) == access_keys.KeyMatch(
        access_keys.fingerprint(site.access_key)
    )
    assert len(compared) == 3
    compared.clear()
    assert access_keys.match_access_key("wrong", site) is None
    assert len(compared) == 3


def test_each_delivery_records_the_fingerprint_of_its_key_and_the_settings_page_shows_it(
    client, admin_client, access_key
):
    call(client, access_key)
    access_keys.rotate(WebhookSettings.load())
    new_key = WebhookSettings.load().access_key
    call(client, new_key, header="bearer")
    old_print, new_print = access_keys.fingerprint(access_key), access_keys.fingerprint(new_key)
    assert list(WebhookDelivery.objects.order_by("id").values_list("access_key_fingerprint", flat=True)) == [
        old_print,
        new_print,
    ]
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert f"<code>{new_print}</code> current key" in page
    assert f"<code>{old_print}</code> previous key (valid until" in page
    stored = json.dumps(list(WebhookDelivery.objects.values()), default=str)
    assert access_key not in stored and new_key not in stored


def test_the_settings_page_recommends_the_header_form(admin_client, access_key):
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    assert f"Authorization: Bearer {access_key}" in page
    assert 'value="http://testserver/?wpf_action=update_tags"' in page


def test_a_rotation_from_a_stale_copy_keeps_the_key_made_meanwhile(client, access_key):
    first_copy, second_copy = WebhookSettings.load(), WebhookSettings.load()  # two admins' pages, opened together
    made_first, _ = access_keys.rotate(first_copy)
    made_second, _ = access_keys.rotate(second_copy)
    assert second_copy.access_key == made_second
    for key in (access_key, made_first, made_second):
        assert call(client, key).status_code == 200
    access_keys.end_grace(first_copy)  # a stale copy cannot bring back what it held either
    assert call(client, made_second).status_code == 200
    assert call(client, made_first).status_code == 403


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_lose_no_key():
    import threading

    from django.db import connection

    original = WebhookSettings.load().access_key
    start = threading.Barrier(4)
    made = []

    def rotate():
        try:
            site = WebhookSettings.load()
            start.wait()
            made.append(access_keys.rotate(site)[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    site = WebhookSettings.load()
    assert len(made) == 4
    valid = {site.access_key, *(previous.key for previous in access_keys.previous_keys(site))}
    assert valid == {original, *made}
