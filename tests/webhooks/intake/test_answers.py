"""The endpoint's answers: keys, actions, contacts, payloads, sizes, methods."""

import pytest

from users.models import ActivityLog, User
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def test_the_test_action_answers_ok_without_touching_anyone(hook, emulator):
    response = hook("test", body={})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "action": "test"}
    assert emulator.requests() == []
    assert User.objects.count() == 0
    assert WebhookDelivery.objects.get().status == "succeeded"


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "*/*"])
def test_the_answer_is_json_whatever_accept_says(hook, emulator, accept):
    # Customer.io lets a journey set any header: a webhook is never left unprocessed for what it says it accepts.
    response = hook("test", body={}, headers={"accept": accept})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == b'{"status":"ok","action":"test"}'
    assert WebhookDelivery.objects.get().status == "succeeded"


@pytest.mark.parametrize("key", ["wrong-key", ""])
def test_a_wrong_or_missing_key_is_refused_without_storing_or_logging_anything(hook, emulator, key, caplog, json_log):
    response = hook("add", key=key)
    assert response.status_code == 403
    assert response.json() == {"error": "invalid_access_key", "detail": "Invalid Access Key"}
    assert WebhookDelivery.objects.count() == 0
    assert ActivityLog.objects.count() == 0
    assert emulator.requests() == []
    if key:
        assert key not in caplog.text
        assert key not in json_log.text


def test_a_missing_access_key_parameter_is_refused(client, emulator):
    response = client.post("/?wpf_action=test", data="{}", content_type="application/json")
    assert response.status_code == 403


def test_the_key_is_checked_before_the_action(hook):
    assert hook(None, key="nope").status_code == 403


def test_no_action(hook):
    response = hook(None)
    assert response.status_code == 400
    assert response.json() == {"error": "no_action", "detail": "No Action Specified"}


def test_unknown_action(hook):
    response = hook("delete_everyone")
    assert response.status_code == 400
    assert response.json()["error"] == "unknown_action"


def test_no_contact(hook, emulator):
    response = hook("update_tags", body={"name": "Ann"})
    assert response.status_code == 400
    assert response.json()["error"] == "no_contact"


def test_an_invalid_email(hook):
    response = hook("update_tags", body={"email": "{{customer.email}}"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_contact"


@pytest.mark.parametrize("body", ['{"email": "ann@example.com"', "not a form at all", "[1, 2]"])
def test_a_body_that_is_neither_json_nor_a_form(hook, body):
    response = hook("update_tags", body=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"


def test_a_body_over_the_limit_is_refused(hook, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    response = hook("update_tags", body={"email": "ann@example.com", "padding": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert WebhookDelivery.objects.get().status == "invalid"  # the caller has the key: recorded and logged
    assert ActivityLog.objects.get(level="warning").message.startswith("Webhook update_tags refused: 413")


def test_a_body_over_the_limit_without_the_key_is_refused_for_the_key_unread(hook, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    response = hook("update_tags", key="wrong", body={"email": "ann@example.com", "padding": "x" * 2000})
    assert response.status_code == 403
    assert not WebhookDelivery.objects.exists() and not ActivityLog.objects.exists()


def test_json_is_read_whatever_the_content_type(client, access_key, emulator):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")
    response = client.post(
        f"/?wpf_action=update_tags&access_key={access_key}",
        data='{"email": "ann@example.com"}',
        content_type="text/plain",
    )
    assert response.status_code == 200, response.content
    assert response.json()["tags"] == ["Newsletter", "VIP"]


def test_a_form_body_and_a_query_string_contact_work(client, access_key, emulator):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")
    form = client.post(
        f"/?wpf_action=update_tags&access_key={access_key}",
        data="email=ann%40example.com",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 200 and form.json()["status"] == "ok"
    query = client.get(f"/?wpf_action=update_tags&access_key={access_key}&email=ann%40example.com")
    assert query.status_code == 200 and query.json()["status"] == "ok"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "get"])
def test_every_method_customerio_offers(hook, emulator, method):
    User.objects.create_user(username="ann", email="ann@example.com", password="x")
    response = hook("update_tags", method=method)
    assert response.status_code == 200, response.content
    assert response.json()["tags"] == ["Newsletter", "VIP"]


@pytest.mark.parametrize("path", ["/webhooks/customerio/", "/webhooks/customerio"])
def test_the_webhook_is_also_under_its_own_path(hook, emulator, path):
    response = hook.client.post(hook.url("test", path=path), data="{}", content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "action": "test"}


def test_a_plain_get_of_the_root_is_the_home_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_emails_are_trimmed_and_matched_case_insensitively(hook, emulator):
    user = User.objects.create_user(username="ann", email="Ann@Example.com", password="x")
    response = hook("update_tags", body={"email": "  ANN@example.COM "})
    assert response.json()["user_id"] == user.pk


def test_the_client_ip_comes_from_a_trusted_proxy_only(hook, emulator, settings):
    hook.client.post(
        hook.url("test"),
        data="{}",
        content_type="application/json",
        REMOTE_ADDR="10.0.0.5",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
    )
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    hook.client.post(
        hook.url("test"),
        data="{}",
        content_type="application/json",
        REMOTE_ADDR="10.0.0.5",
        HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9",
    )
    assert list(WebhookDelivery.objects.order_by("id").values_list("remote_ip", flat=True)) == [
        "10.0.0.5",
        "203.0.113.9",
    ]
