"""The access key never reaches a log line or an error report."""

import logging

import pytest
from django.test import RequestFactory

from webhooks.logging import RedactSecretsFilter, SafeExceptionReporter

# Built at import, so neither the report's source excerpts nor the test frame's variables contain it.
REPORT_KEY = "Sup3r" + "ReportKey"


def test_request_log_lines_lose_the_access_key():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("POST /?wpf_action=add&access_key=Sup3rSecretKey&role=customer HTTP/1.1", "200", "81"),
        None,
    )
    assert RedactSecretsFilter().filter(record)
    line = record.getMessage()
    assert "Sup3rSecretKey" not in line
    assert "wpf_action=add" in line and "role=customer" in line


def test_the_configured_handlers_filter_request_lines(capsys):
    from django.conf import settings

    handlers = settings.LOGGING["handlers"]
    assert "redact_secrets" in handlers["console"]["filters"]
    assert "redact_secrets" in handlers["django.server"]["filters"]
    logging.getLogger("django.server").info('"GET /?wpf_action=test&access_key=Sup3rSecretKey HTTP/1.1" 200 2')
    assert "Sup3rSecretKey" not in capsys.readouterr().err


@pytest.mark.django_db
def test_error_reports_lose_the_access_key():
    request = RequestFactory().post(f"/?wpf_action=add&access_key={REPORT_KEY}", data={})
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        reporter = SafeExceptionReporter(request, type(exc), exc, exc.__traceback__)
        text = reporter.get_traceback_text() + reporter.get_traceback_html()
    assert REPORT_KEY not in text
    assert "boom" in text


@pytest.mark.django_db
def test_a_planned_account_and_a_hash_under_way_never_show_their_password():
    """Objects that hold a plaintext password (a generated one is kept until Customer.io has it) may end up in a
    log line or an error report through their repr."""
    from concurrent.futures import Future

    from users.models import User
    from users.services.accounts.people import NewAccount
    from users.services.password_hashing import HashedAhead

    account = NewAccount(User(username="ann"), "Pl41ntext-Secret", True, "", [], "ann")
    assert "Pl41ntext-Secret" not in repr(account)
    assert "Pl41ntext-Secret" not in repr(HashedAhead("Pl41ntext-Secret", Future(), generated=True))


# The JSON format (LOG_FORMAT=json) --------------------------------------------------------------------------------

CANARY_KEY = "Canary" + "AccessKey9"
CANARY_PASSWORD = "Canary" + "Passw0rd!"
CANARY_TOKEN = "cabc12-" + "0123456789abcdef0123"


def test_the_json_handler_scrubs_before_it_formats():
    from django.conf import settings

    logging_config = settings.LOGGING
    for handler in ("console", "django.server"):
        assert logging_config["handlers"][handler]["filters"] == ["redact_secrets", "log_context"]
    assert logging_config["formatters"]["json"] == {"()": "webhooks.log_json.JsonFormatter"}


class Leaky:
    def __repr__(self):
        return f"<Leaky /?wpf_action=add&access_key={CANARY_KEY}>"


def test_json_lines_never_hold_a_secret(json_log):
    log = logging.getLogger("webhooks.intake.views")
    log.warning('"POST /?wpf_action=add&access_key=%s HTTP/1.1" 200', CANARY_KEY)
    log.warning("Authorization: Bearer %s", CANARY_KEY)
    log.warning("Welcome link https://example.com/accounts/reset/MQ/%s/ sent", CANARY_TOKEN)
    log.warning("Parsed %s", {"email": "ann@example.com", "user_pass": CANARY_PASSWORD})
    log.warning("extras", extra={"password": CANARY_PASSWORD, "context": {"api_key": CANARY_KEY}, "thing": Leaky()})
    try:
        raise RuntimeError(f"could not open /?access_key={CANARY_KEY} for {{'password': '{CANARY_PASSWORD}'}}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("django.request").error("Internal Server Error: /", extra={"request": Leaky()})
    lines = json_log.lines()
    assert len(lines) == 7
    for canary in (CANARY_KEY, CANARY_PASSWORD, CANARY_TOKEN):
        assert canary not in json_log.text
    assert "/accounts/reset/MQ/********/" in lines[2]["message"]
    assert lines[4]["password"] == "********" and lines[4]["context"] == {"api_key": "********"}
    assert "RuntimeError: could not open" in lines[5]["exc_info"]
    assert "request" not in lines[6]


def test_plain_lines_lose_set_password_tokens_and_secrets_in_tracebacks():
    import io

    [console] = [handler for handler in logging.getLogger().handlers if handler.name == "console"]
    sink = io.StringIO()
    previous = console.setStream(sink)
    try:
        log = logging.getLogger("webhooks.intake.views")
        log.warning("GET /accounts/reset/MQ/%s/ then /accounts/reset/MQ/set-password/", CANARY_TOKEN)
        try:
            raise RuntimeError(f"GET /?access_key={CANARY_KEY}")
        except RuntimeError:
            log.exception("failed")
    finally:
        console.setStream(previous)
    printed = sink.getvalue()
    assert CANARY_TOKEN not in printed and CANARY_KEY not in printed
    assert "/accounts/reset/MQ/set-password/" in printed
    assert "RuntimeError: GET /?access_key=********" in printed


def test_log_lines_lose_the_passwords_of_urls_and_basic_credentials():
    from settings_app.redaction import scrub

    assert scrub("could not connect to postgres://site:S3cret-Db@db:5432/site") == (
        "could not connect to postgres://site:********@db:5432/site"
    )
    assert scrub("cache redis://:R3dis-pw@cache:6379/0 down") == "cache redis://:********@cache:6379/0 down"
    assert scrub("Authorization: Basic Y3VzdG9tZXJpbzpLRVk=") == "Authorization: Basic ********"
    # What is not a credential stays readable.
    for text in ("ann@example.com on https://example.com/a@b", "the basic plan", "Basic users", "http://host:80/x"):
        assert scrub(text) == text
