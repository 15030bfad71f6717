"""With DEBUG off and no EMAIL_URL, a welcome email is not sent and its content reaches no log; the activity log
says why."""

from users.models import ActivityLog, User


def test_a_welcome_email_without_a_mail_server_is_reported_not_printed(hook, emulator, settings, caplog, capsys):
    settings.EMAIL_BACKEND = "users.mail.MailNotConfiguredBackend"
    response = hook("add", send_notification="true")
    assert response.status_code == 200  # the account is made; only the email is missing
    user = User.objects.get(email="ann@example.com")
    line = ActivityLog.objects.get(user=user, message__startswith="Welcome email")
    assert line.message == ("Welcome email to ann@example.com not sent: no mail server is configured (set EMAIL_URL).")
    assert line.level == ActivityLog.Level.ERROR
    printed = capsys.readouterr()
    logged = caplog.text + printed.out + printed.err
    assert "not sent" in caplog.text
    assert "/reset/" not in logged and "set your password" not in logged.lower()
