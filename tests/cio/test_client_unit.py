"""Small pieces of the client that are clearer with `responses` than with the emulator."""

import email.utils
import time
import types
from datetime import UTC, datetime, timedelta

import pytest
import responses

from cio import get_client, transport
from cio.errors import BadRequest, UpstreamError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("region", "app_host", "track_host"),
    [
        ("us", "https://api.customer.io", "https://track.customer.io"),
        ("eu", "https://api-eu.customer.io", "https://track-eu.customer.io"),
    ],
)
@responses.activate
def test_region_picks_the_hosts(settings, region, app_host, track_host):
    settings.CUSTOMERIO_REGION = region
    settings.CUSTOMERIO_APP_API_URL = ""
    settings.CUSTOMERIO_TRACK_API_URL = ""
    settings.CUSTOMERIO_APP_API_RATE = 0
    responses.get(f"{app_host}/v1/segments", json={"segments": []})
    responses.put(f"{track_host}/api/v1/customers/a%2Bb%40x.io", json={})
    client = get_client()
    assert client.list_segments() == []
    client.identify("a+b@x.io", {"plan": "gold"})
    assert responses.calls[0].request.headers["Authorization"] == "Bearer emulator-app-key"
    assert responses.calls[1].request.headers["Authorization"].startswith("Basic ")
    assert responses.calls[1].request.url == f"{track_host}/api/v1/customers/a%2Bb%40x.io"


@responses.activate
def test_error_text_comes_from_meta_error(settings):
    settings.CUSTOMERIO_APP_API_URL = "https://app.invalid"
    settings.CUSTOMERIO_APP_API_RATE = 0
    responses.get("https://app.invalid/v1/segments", status=401, json={"meta": {"error": "Unauthorized request"}})
    with pytest.raises(Exception, match="401 Unauthorized request"):
        get_client().list_segments()


@responses.activate
def test_400_is_not_retried_and_names_the_problem(settings):
    settings.CUSTOMERIO_APP_API_URL = "https://app.invalid"
    settings.CUSTOMERIO_APP_API_RATE = 0
    responses.post(
        "https://app.invalid/v1/customers/attributes",
        status=400,
        json={"errors": [{"detail": "too many ids", "status": "400"}]},
    )
    with pytest.raises(BadRequest, match="POST /v1/customers/attributes: 400 too many ids"):
        get_client().get_attributes_batch(["a@example.com"])
    assert len(responses.calls) == 1


class Waits:
    """Stands in for the `time` module in cio.transport, recording the retry waits instead of sleeping them."""

    def __init__(self):
        self.seconds = []
        self.monotonic = time.monotonic

    def sleep(self, seconds):
        self.seconds.append(seconds)


@pytest.fixture
def waits(monkeypatch, settings):
    settings.CUSTOMERIO_APP_API_URL = "https://app.invalid"
    settings.CUSTOMERIO_APP_API_RATE = 0
    settings.CUSTOMERIO_MAX_RETRIES = 2
    settings.CUSTOMERIO_RETRY_BACKOFF = 1.0
    recorder = Waits()
    monkeypatch.setattr(transport, "time", recorder)
    return recorder


def http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        (lambda: "7", 7, 7),
        (lambda: http_date(10), 8.5, 10),  # an HTTP date: whole seconds, so up to a second early
        (lambda: http_date(3600), 30, 30),  # capped, as the seconds form is
        (lambda: "3600", 30, 30),
        (lambda: http_date(-60), 0, 0),  # already past: retry at once
    ],
    ids=["seconds", "date", "far-date", "far-seconds", "past-date"],
)
@responses.activate
def test_retry_after_is_honoured_in_seconds_or_as_an_http_date(waits, retry_after, low, high):
    responses.get("https://app.invalid/v1/segments", status=503, headers={"Retry-After": retry_after()})
    responses.get("https://app.invalid/v1/segments", json={"segments": []})
    assert get_client().list_segments() == []
    [wait] = waits.seconds
    assert low <= wait <= high


@pytest.mark.parametrize(("draw", "expected"), [("lowest", [0.0, 0.0]), ("highest", [1.0, 2.0])])
@responses.activate
def test_the_backoff_is_full_jitter_from_zero_to_the_doubling_ceiling(waits, monkeypatch, draw, expected):
    """Without Retry-After the wait is drawn from 0 to base x 2^(attempt-1): the random draw at either end shows
    the range."""
    pick = {"lowest": lambda low, high: low, "highest": lambda low, high: high}[draw]
    monkeypatch.setattr(transport, "random", types.SimpleNamespace(uniform=pick))
    responses.get("https://app.invalid/v1/segments", status=502)
    with pytest.raises(UpstreamError):
        get_client().list_segments()
    assert len(responses.calls) == 3
    assert waits.seconds == expected
