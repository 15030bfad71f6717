"""The welcome email: the username and a set-password link (Django's password-reset token), never a password."""

import logging
from urllib.parse import urlsplit

from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from settings_app.services import site_base_url

from ..mail import MailNotConfigured
from ..models import ActivityLog, User
from .activity import log_activity

logger = logging.getLogger(__name__)


def set_password_url(user: User) -> str:
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return site_base_url() + path


def send_welcome_email(user: User, source=ActivityLog.Source.WEBHOOK) -> bool:
    """Send it; a failure is logged and reported as False, never raised (it must not fail the webhook)."""
    context = {
        "user": user,
        "site_name": urlsplit(site_base_url()).netloc,
        "set_password_url": set_password_url(user),
        "login_url": site_base_url() + reverse("login"),
    }
    subject = render_to_string("users/email/welcome_subject.txt", context).strip()
    body = render_to_string("users/email/welcome_body.txt", context)
    try:
        send_mail(subject, body, None, [user.email])
    except MailNotConfigured as exc:
        logger.warning("Welcome email to %s not sent: %s", user.email, exc)
        log_activity(
            source,
            f"Welcome email to {user.email} not sent: {exc}.",
            level=ActivityLog.Level.ERROR,
            user=user,
        )
        return False
    except Exception as exc:
        logger.exception("Welcome email to %s failed", user.email)
        log_activity(
            source,
            f"Welcome email to {user.email} failed: {type(exc).__name__}",
            level=ActivityLog.Level.ERROR,
            user=user,
        )
        return False
    log_activity(source, f"Sent welcome email to {user.email}", user=user)
    return True


def send_due_welcome_email(user: User, source) -> bool:
    """Send the welcome email the user is owed. The conditional update claims it, so that concurrent processings
    send it once."""
    if not User.objects.filter(pk=user.pk, welcome_email_due=True).update(welcome_email_due=False):
        return False
    user.welcome_email_due = False
    return send_welcome_email(User.objects.get(pk=user.pk), source=source)
