"""LOG_FORMAT=json: one JSON object per line, each with the request id, and the delivery id and action where there is
one; every request gets an id (its own X-Request-ID when that is a short, plain token) and its answer names it."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from webhooks.log_context import LogContextFilter, delivery_context, request_id_for
from webhooks.models import WebhookDelivery
from webhooks.queue import drain

from .conftest import make_user

pytestmark = pytest.mark.django_db

OUR_ID = re.compile(r"[0-9a-f]{16}")


def test_every_record_is_one_json_line_with_the_same_keys_first(json_log):
    log = logging.getLogger("webhooks.processing")
    log.info("two\nlines")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed for %s", "ann@example.com")
    first, second = json_log.lines()
    assert len(json_log.text.splitlines()) == 2
    assert list(first) == ["time", "level", "logger", "message", "request_id", "delivery_id", "action"]
    assert first["message"] == "two\nlines" and first["level"] == "INFO" and first["logger"] == "webhooks.processing"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["time"])
    assert (first["request_id"], first["delivery_id"], first["action"]) == (None, None, None)
    assert second["message"] == "failed for ann@example.com" and second["level"] == "ERROR"
    assert second["exc_info"].startswith("Traceback") and "ValueError: boom" in second["exc_info"]


def test_a_synchronous_webhook_line_carries_the_request_and_the_delivery(hook, emulator, json_log, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # the test client's address: a proxy whose X-Request-ID is kept
    make_user()
    emulator.set_faults(fail_rate=1.0, fail_status=503)
    response = hook("update", headers={"X-Request-ID": "lb-7f3a9c"})
    assert response.status_code == 502
    assert response["X-Request-ID"] == "lb-7f3a9c"
    delivery = WebhookDelivery.objects.get()
    [line] = [line for line in json_log.lines() if line["logger"] == "webhooks.processing"]
    assert "Customer.io error" in line["message"]
    assert (line["request_id"], line["delivery_id"], line["action"]) == ("lb-7f3a9c", delivery.pk, "update")


def queued_delivery(action: str, email="ann@example.com") -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        action=action, contact=email, contact_type="email", contact_key=f"email:{email}", status="queued"
    )


def test_worker_lines_carry_the_delivery_and_its_action(emulator, json_log, settings):
    settings.CUSTOMERIO_MAX_RETRIES = 0
    make_user()
    emulator.set_faults(fail_rate=1.0, fail_status=503)
    delivery = queued_delivery("update")
    drain.process(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    written = [line for line in json_log.lines() if line["logger"].startswith("webhooks.")]
    assert written, json_log.text
    assert {(line["delivery_id"], line["action"], line["request_id"]) for line in written} == {
        (delivery.pk, "update", None)
    }
    logging.getLogger("webhooks.worker").info("after the task")
    assert json_log.lines()[-1]["delivery_id"] is None  # the context ends with the task


@pytest.mark.parametrize("sent", ["", "x" * 65, "a b", "abc\nERROR forged line", 'q"uote', "semi;colon", "é"])
def test_an_unsafe_or_missing_request_id_is_replaced_by_our_own(client, sent):
    headers = {"X-Request-ID": sent} if sent else {}
    answer = client.get("/healthz", headers=headers)
    assert OUR_ID.fullmatch(answer["X-Request-ID"])
    assert client.get("/healthz")["X-Request-ID"] != answer["X-Request-ID"]


def test_a_request_id_from_anyone_but_a_trusted_proxy_is_replaced(client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.5"]
    answer = client.get("/healthz", headers={"X-Request-ID": "forged-1"})
    assert OUR_ID.fullmatch(answer["X-Request-ID"])
    answer = client.get("/healthz", headers={"X-Request-ID": "from-the-proxy"}, REMOTE_ADDR="10.0.0.5")
    assert answer["X-Request-ID"] == "from-the-proxy"


@pytest.mark.parametrize("sent", ["abc", "Root=1-67891233-abcdef012345678912345678", "a.b_c:d-e+f", "7" * 64])
def test_a_short_plain_request_id_is_kept(sent):
    assert request_id_for(sent) == sent


def test_site_pages_and_django_lines_have_a_request_id(client, json_log, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    answer = client.get("/no-such-page", headers={"X-Request-ID": "probe-1"})
    assert answer.status_code == 404 and answer["X-Request-ID"] == "probe-1"
    [line] = [line for line in json_log.lines() if line["logger"] == "django.request"]
    assert line["message"] == "Not Found: /no-such-page" and line["request_id"] == "probe-1"
    assert line["status_code"] == 404
    assert "request" not in line  # Django's request object: its repr would print the whole URL


def test_the_webhook_skips_site_middleware_but_not_its_request_id(hook, emulator):
    answer = hook("test", body={})
    assert answer.status_code == 200 and OUR_ID.fullmatch(answer["X-Request-ID"])
    assert "sessionid" not in answer.cookies  # still served by the shortcut


def test_context_values_already_on_a_record_are_kept(json_log):
    with delivery_context(5, "add"):
        logging.getLogger("webhooks").info("one", extra={"request_id": "from-gunicorn"})
    [line] = json_log.lines()
    assert (line["request_id"], line["delivery_id"], line["action"]) == ("from-gunicorn", 5, "add")


def run_with_settings(env_extra: dict, script: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings",
        "ENV_FILE": os.devnull,
        **env_extra,
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_settings_write_json_lines_only_when_asked(tmp_path):
    script = (
        "import django, logging; django.setup()\n"
        "from django.test.utils import setup_test_environment; setup_test_environment()\n"
        "from django.test import Client\n"
        "Client().get('/missing/?access_key=Sup3rSecretKey', headers={'X-Request-ID': 'rid-42'})\n"
        "logging.getLogger('webhooks.worker').warning('Worker %s stalled', 'w-1')\n"
    )
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = run_with_settings({**database, "LOG_FORMAT": "json", "TRUSTED_PROXIES": "127.0.0.1"}, script)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["message"], line["request_id"]) for line in lines] == [
        ("django.request", "Not Found: /missing/", "rid-42"),
        ("webhooks.worker", "Worker w-1 stalled", None),
    ]
    assert "Sup3rSecretKey" not in result.stderr

    plain = run_with_settings(database, script)
    assert plain.returncode == 0, plain.stderr
    assert "WARNING webhooks.worker: Worker w-1 stalled" in plain.stderr
    assert not plain.stderr.lstrip().startswith("{")

    refused = run_with_settings({**database, "LOG_FORMAT": "xml"}, "import django; django.setup()")
    assert refused.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json', not 'xml'." in refused.stderr


def test_an_action_the_caller_passes_is_kept_outside_a_delivery():
    record = logging.LogRecord("webhooks.x", logging.INFO, __file__, 1, "m", None, None)
    record.action = "add"
    assert LogContextFilter().filter(record)
    assert (record.action, record.delivery_id) == ("add", None)
