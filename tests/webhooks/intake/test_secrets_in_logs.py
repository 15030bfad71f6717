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
