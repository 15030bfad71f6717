"""Property-based fuzzing of the webhook (hypothesis): whatever the query string, headers and body, the answer is a
JSON 2xx/4xx — never a 5xx, never a traceback in the log — and nothing stored or logged holds the key or a password.
Bounded examples keep it quick; bench/fuzz.py runs thousands against a real server."""

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from users.models import ActivityLog
from webhooks.intake import refusals as refused
from webhooks.models import RefusedRequestWindow, WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def refused_request_throttle_off(settings):
    """So that the generated requests reach the processing, however many come with a wrong key."""
    settings.WEBHOOK_REFUSED_PER_MINUTE = 0


SENT_PASSWORD = "hypothesis-Secret-91"

text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=12
)
emails = st.sampled_from(["ann@example.com", "bob@example.com", "ünï@exämple.com", "Jose\u0301@example.com"]) | text

bodies = st.one_of(
    st.fixed_dictionaries(
        {"email": emails}, optional={"cio_id": scalars, "attributes": json_values, "user_pass": st.just(SENT_PASSWORD)}
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.text(max_size=200).map(lambda value: value.encode("utf-8", "surrogatepass")),
)
actions = st.sampled_from(["update_tags", "update", "add", "test", "", "nope"]) | text
methods = st.sampled_from(["POST", "GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "", "x/y"])
idempotency = st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=300)


def encode(value: str) -> str:
    from urllib.parse import quote

    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    method=methods,
    action=actions,
    key_place=st.sampled_from(["url", "bearer", "header", "wrong", "none"]),
    extra=st.dictionaries(st.sampled_from(["async", "role", "send_notification", "foo", "password"]), text, max_size=3),
    body=bodies,
    content_type=content_types,
    delivery_id=idempotency,
)
def test_any_request_gets_a_clear_answer_and_leaks_nothing(
    client, access_key, emulator, caplog, method, action, key_place, extra, body, content_type, delivery_id
):
    caplog.set_level(logging.INFO)
    caplog.clear()
    query = {"wpf_action": action, **extra}
    headers = {}
    if key_place == "url":
        query["access_key"] = access_key
    elif key_place == "bearer":
        headers["Authorization"] = f"Bearer {access_key}"
    elif key_place == "header":
        headers["X-Access-Key"] = access_key
    elif key_place == "wrong":
        query["access_key"] = access_key[::-1]
    if delivery_id is not None:
        headers["X-CIO-Delivery-ID"] = delivery_id
    url = "/?" + "&".join(f"{encode(name)}={encode(value)}" for name, value in query.items())
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    response = client.generic(method, url, data, content_type=content_type, headers=headers)

    assert response.status_code < 500, response.content
    if response.status_code != 204:
        assert isinstance(response.json(), dict)
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text
    refused.flush()
    stored = json.dumps(list(WebhookDelivery.objects.values()), default=str)
    stored += json.dumps(list(RefusedRequestWindow.objects.values()), default=str)
    stored += json.dumps(list(ActivityLog.objects.values("message", "context")), default=str)
    for secret in (access_key, SENT_PASSWORD):
        assert secret not in stored
        assert secret not in caplog.text
