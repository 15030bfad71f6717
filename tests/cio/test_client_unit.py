"""Small pieces of the client that are clearer with `responses` than with the emulator."""

import pytest
import responses

from cio import get_client
from cio.errors import BadRequest

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
