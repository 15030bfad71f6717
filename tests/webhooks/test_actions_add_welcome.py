"""The add action's welcome email: sent only when asked (send_notification=true or the setting), never holding the
password, and its set-password link works."""

import pytest
from django.core import mail

from users.models import User

from .conftest import set_settings

pytestmark = pytest.mark.django_db


def test_welcome_mail_only_when_asked(hook, emulator):
    hook("add")
    assert len(mail.outbox) == 0
    hook("add", email="bob@example.com", send_notification="false")
    assert len(mail.outbox) == 0
    hook("add", email="cara+news@example.com", send_notification="true")
    assert [m.to for m in mail.outbox] == [["cara+news@example.com"]]


def test_the_welcome_setting_sends_mail_without_the_parameter(hook, emulator):
    set_settings(send_welcome_email=True)
    hook("add")
    assert len(mail.outbox) == 1


def test_the_welcome_mail_has_a_working_set_password_link(hook, emulator, client, settings):
    settings.SITE_BASE_URL = "https://mydomain.com"
    set_settings(return_password=True, return_password_field="site_password")
    hook("add", send_notification="true")
    [message] = mail.outbox
    password = emulator.customer("ann@example.com")["attributes"]["site_password"]
    assert password not in message.body
    assert "ann@example.com" in message.body  # the username
    link = next(line for line in message.body.splitlines() if "/accounts/reset/" in line).strip()
    assert link.startswith("https://mydomain.com/accounts/reset/")
    path = link.removeprefix("https://mydomain.com")
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200 and b"new_password1" in form_page.content
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "A-brand-new-passw0rd", "new_password2": "A-brand-new-passw0rd"},
    )
    assert done.status_code == 302
    assert User.objects.get().check_password("A-brand-new-passw0rd")
