"""Mail when none is configured: with DEBUG off and no EMAIL_URL, emails are refused instead of printed (a welcome
email holds a set-password link, and a log is no place for it)."""

from django.conf import settings
from django.core import checks
from django.core.mail.backends.base import BaseEmailBackend

NOT_CONFIGURED_BACKEND = "users.mail.MailNotConfiguredBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


class MailNotConfigured(Exception):
    """No mail server is configured (EMAIL_URL): nothing was sent."""


class MailNotConfiguredBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        if self.fail_silently:
            return 0
        raise MailNotConfigured("no mail server is configured (set EMAIL_URL)")


@checks.register(checks.Tags.security, deploy=True)
def check_mail_is_configured(app_configs, **kwargs):
    if settings.EMAIL_BACKEND == NOT_CONFIGURED_BACKEND:
        return [
            checks.Warning(
                "EMAIL_URL is not set: no email is sent (welcome emails with their set-password links included).",
                hint="Set EMAIL_URL to your mail server, e.g. smtp+tls://user:password@smtp.example.com:587.",
                id="users.W001",
            )
        ]
    if settings.EMAIL_BACKEND == CONSOLE_BACKEND and not settings.DEBUG:
        return [
            checks.Warning(
                "Emails are printed to the log (EMAIL_URL=consolemail://), set-password links included.",
                hint="Set EMAIL_URL to your mail server, e.g. smtp+tls://user:password@smtp.example.com:587.",
                id="users.W002",
            )
        ]
    return []
