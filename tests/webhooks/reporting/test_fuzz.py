"""Property-based fuzzing of the reporting webhook (hypothesis): whatever the headers and body, the answer is a JSON
2xx/4xx — never a 5xx, never a traceback — an event is stored only for a request signed with a signing key within the
five minutes, never the message content, and the signing key is neither stored nor logged. bench/fuzz.py sends
thousands against a real server."""

import json
import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhooks.intake import refusals as refused
from webhooks.models import MessageEvent, RefusedRequestWindow

from .conftest import KEY, URL, signature

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def refused_request_throttle_off(settings):
    settings.WEBHOOK_REFUSED_PER_MINUTE = 0


text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=12
)
events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": text | scalars,
        "metric": st.sampled_from(["sent", "clicked", "bounced", ""]) | scalars,
        "object_type": st.sampled_from(["email", "sms", "customer"]) | scalars,
        "timestamp": st.integers() | scalars,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "identifiers": json_values,
                "recipient": scalars,
                "campaign_id": scalars,
                "href": scalars,
                "content": st.just("<p>the message body</p>"),
            },
        )
        | json_values,
    },
)
bodies = st.one_of(
    events.map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.integers(1, 2000).map(lambda depth: b"[" * depth + b"]" * depth),
)
signing = st.sampled_from(["right", "right", "wrong key", "garbage", "none", "old", "no timestamp"])
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS"])
content_types = st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x", ""])


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(method=methods, body=bodies, how=signing, content_type=content_types)
def test_any_request_gets_a_clear_answer_and_only_signed_events_are_stored(
    client, caplog, method, body, how, content_type
):
    caplog.set_level(logging.INFO)
    caplog.clear()
    MessageEvent.objects.all().delete()
    now = int(time.time())
    timestamp = now - 3600 if how == "old" else now
    headers = {"X-CIO-Timestamp": str(timestamp)}
    if how != "none":
        key = KEY + "-not-it" if how == "wrong key" else KEY
        headers["X-CIO-Signature"] = "zz" * 32 if how == "garbage" else signature(body, timestamp, key)
    if how == "no timestamp":
        del headers["X-CIO-Timestamp"]
    response = client.generic(method, URL, body, content_type=content_type, headers=headers)

    assert response.status_code < 500, response.content
    assert isinstance(response.json(), dict)
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    signed_right = method == "POST" and how == "right"
    if not signed_right:
        assert response.status_code in (401, 405)
        assert not MessageEvent.objects.exists()
    if response.status_code == 200:
        assert MessageEvent.objects.count() == 1
    refused.flush()
    stored = json.dumps(list(MessageEvent.objects.values()), default=str)
    stored += json.dumps(list(RefusedRequestWindow.objects.values()), default=str)
    assert "the message body" not in stored
    assert KEY not in stored
    assert KEY not in caplog.text
