"""WEBHOOK_ALLOWED_NETWORKS: journey webhooks only from Customer.io's addresses (or the networks an operator lists),
the client address read as the throttle reads it (TRUSTED_PROXIES); from elsewhere refused like a wrong key, before
anything is stored."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from webhooks.intake import refusals as refused
from webhooks.models import RefusedRequestWindow, WebhookDelivery
from wpfusion_site import allowed_networks

pytestmark = pytest.mark.django_db

BODY = json.dumps({"email": "ann@example.com"})
CUSTOMERIO_US_ADDRESS = "35.188.196.183"
CUSTOMERIO_EU_ADDRESS = "34.76.143.229"
ELSEWHERE = "203.0.113.9"


def send(client, access_key, address, *, action="test", **extra):
    return client.post(
        f"/?wpf_action={action}",
        BODY,
        content_type="application/json",
        REMOTE_ADDR=address,
        headers={"Authorization": f"Bearer {access_key}"},
        **extra,
    )


@pytest.fixture
def only_customerio_us(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = allowed_networks.parse("customerio-us")


def test_empty_lets_every_address_in(client, access_key, settings):
    assert not settings.WEBHOOK_ALLOWED_NETWORKS  # the default
    assert send(client, access_key, ELSEWHERE).status_code == 200


def test_customerio_addresses_get_in_and_others_are_refused_as_a_wrong_key(client, access_key, only_customerio_us):
    accepted = send(client, access_key, CUSTOMERIO_US_ADDRESS)
    assert accepted.status_code == 200
    assert accepted.json() == {"status": "ok", "action": "test"}
    stored = WebhookDelivery.objects.count()

    refusal = send(client, access_key, ELSEWHERE, action="update_tags")
    eu = send(client, access_key, CUSTOMERIO_EU_ADDRESS)  # the other region's preset is not listed

    for response in (refusal, eu):
        assert response.status_code == 403
        assert response.json() == {"error": "invalid_access_key", "detail": "Invalid Access Key"}
    assert WebhookDelivery.objects.count() == stored  # nothing stored for either
    refused.flush()
    rows = {row.address: row for row in RefusedRequestWindow.objects.all()}
    assert rows[ELSEWHERE].count == 1
    assert rows[ELSEWHERE].actions == ["update_tags"]
    assert rows[CUSTOMERIO_EU_ADDRESS].count == 1


def test_refusals_from_outside_are_throttled_like_wrong_keys(client, access_key, only_customerio_us, settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 3
    statuses = [send(client, access_key, ELSEWHERE).status_code for _ in range(5)]
    assert statuses[:3] == [403, 403, 403]
    assert statuses[3:] == [429, 429]
    assert send(client, access_key, CUSTOMERIO_US_ADDRESS).status_code == 200  # another address, never throttled


def test_behind_a_trusted_proxy_the_forwarded_address_decides(client, access_key, only_customerio_us, settings):
    proxy = "10.0.0.9"
    settings.TRUSTED_PROXIES = [proxy]
    assert send(client, access_key, proxy, HTTP_X_FORWARDED_FOR=CUSTOMERIO_US_ADDRESS).status_code == 200
    assert send(client, access_key, proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE).status_code == 403
    # The proxy's own request (no X-Forwarded-For) is from the proxy, which is not Customer.io.
    assert send(client, access_key, proxy).status_code == 403


def test_without_a_trusted_proxy_a_forwarded_address_is_not_believed(client, access_key, only_customerio_us):
    # A stranger claiming to forward for Customer.io: X-Forwarded-For is read only from TRUSTED_PROXIES.
    spoofed = send(client, access_key, ELSEWHERE, HTTP_X_FORWARDED_FOR=CUSTOMERIO_US_ADDRESS)
    assert spoofed.status_code == 403
    # And behind a proxy the site was not told about, every journey comes from the proxy: refused.
    assert send(client, access_key, "10.0.0.9", HTTP_X_FORWARDED_FOR=CUSTOMERIO_US_ADDRESS).status_code == 403


def test_networks_and_single_addresses_of_both_families(client, access_key, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = allowed_networks.parse("198.51.100.0/24, 2001:db8::/32, 192.0.2.7")
    assert send(client, access_key, "198.51.100.200").status_code == 200
    assert send(client, access_key, "2001:db8:1::5").status_code == 200
    assert send(client, access_key, "192.0.2.7").status_code == 200
    assert send(client, access_key, "::ffff:198.51.100.3").status_code == 200  # an IPv4 client on a dual-stack socket
    assert send(client, access_key, "192.0.2.8").status_code == 403
    assert send(client, access_key, "2001:db9::1").status_code == 403


def test_the_presets_hold_customerio_published_addresses():
    parsed = allowed_networks.parse("CustomerIO-EU,customerio-us")
    assert parsed.entries == ("customerio-eu", "customerio-us")
    assert len(parsed.networks) == len(allowed_networks.CUSTOMERIO_US) + len(allowed_networks.CUSTOMERIO_EU)
    assert parsed.describe() == "customerio-eu (10 addresses), customerio-us (14 addresses)"
    assert not allowed_networks.parse(" , ")  # nothing listed: any address


@pytest.mark.parametrize("value", ["10.0.0.0/33", "customerio", "example.com", "10.0.0.1-10.0.0.9"])
def test_a_bad_entry_stops_the_site_with_a_sentence(value):
    with pytest.raises(SystemExit) as stopped:
        allowed_networks.parse(f"customerio-us,{value}")
    assert str(stopped.value) == (
        f"WEBHOOK_ALLOWED_NETWORKS: {value!r} is neither a network (203.0.113.0/24, 2001:db8::/32, a single address) "
        "nor one of the presets customerio-us, customerio-eu."
    )


def test_the_settings_refuse_to_load_with_a_bad_network():
    env = {**os.environ, "ENV_FILE": os.devnull, "SECRET_KEY": "x", "WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,nope"}
    result = subprocess.run(
        [sys.executable, "-c", "import wpfusion_site.settings"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "WEBHOOK_ALLOWED_NETWORKS: 'nope' is neither a network (203.0.113.0/24, 2001:db8::/32, a single address) "
        "nor one of the presets customerio-us, customerio-eu."
    )
