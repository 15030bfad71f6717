"""/metrics answers Prometheus holding METRICS_TOKEN, nobody else; it is off without the token; no access rule,
HTTPS redirect or refused-request throttle stands in a scraper's way."""

import pytest

from users.models import AccessRule, Tag
from webhooks.models import RefusedRequestWindow

from .conftest import TOKEN, exposed_names

pytestmark = pytest.mark.django_db


def test_off_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN],
)
def test_a_missing_or_wrong_token_is_401(client, metrics_on, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = client.get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert TOKEN.encode() not in response.content
    assert b"webhook_requests_total" not in response.content


def test_the_token_opens_the_prometheus_text_format(client, metrics_on):
    response = client.get("/metrics", **metrics_on)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    text = response.content.decode()
    assert TOKEN not in text
    assert {
        "webhook_requests_total",
        "webhook_request_duration_seconds_bucket",
        "webhook_refused_requests_total",
        "webhook_deliveries_processed_total",
        "customerio_api_requests_total",
        "customerio_rate_limit_wait_seconds_total",
        "webhook_deliveries_waiting",
        "webhook_oldest_waiting_seconds",
        "segment_changes_waiting",
        "outbox_entries_waiting",
        "password_returns_owed",
        "worker_last_heartbeat_timestamp_seconds",
    } <= exposed_names(text)


def test_a_bearer_scheme_in_any_case_and_openmetrics_when_asked(client, metrics_on):
    response = client.get(
        "/metrics", HTTP_AUTHORIZATION=f"bearer  {TOKEN} ", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_only_get_and_head(client, metrics_on):
    assert client.head("/metrics", **metrics_on).status_code == 200
    assert client.post("/metrics", **metrics_on).status_code == 405


def test_no_access_rule_covers_it(client, metrics_on):
    rule = AccessRule.objects.create(path="/", prefix=True)
    rule.tags_any.add(Tag.objects.create(segment_id=901, name="Members"))

    assert client.get("/").status_code == 302  # the rule locks the home page: off to the login
    assert client.get("/metrics", **metrics_on).status_code == 200


def test_not_redirected_to_https(client, metrics_on, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/metrics", **metrics_on).status_code == 200
    assert client.get("/admin/login/").status_code == 301  # the redirect is on for everything else


def test_wrong_tokens_are_not_throttled_or_counted_as_refused_webhooks(client, metrics_on, settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 2

    answers = [client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code for _ in range(10)]

    assert answers == [401] * 10
    assert client.get("/metrics", **metrics_on).status_code == 200
    assert RefusedRequestWindow.objects.count() == 0
