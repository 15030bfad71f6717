"""Single-use login links: what the site writes to a Customer.io attribute (Return a login link) so that a journey's
email can log a new person in with one click, without a password travelling anywhere.

A token is `<user id>-<issued>-<digest>` (base 36, base 36, hex): the digest is an HMAC (SECRET_KEY, this module's
salt) over the user's state and the moment it was issued. The state holds the password hash, the last login and the
email, so the link dies when any of them changes: logging in (through the link or otherwise) updates last_login,
which makes every link single use; a new password or email kills links already sent. The token holds no email and
no hash, only the user's id and a timestamp; the state's secrets are inside the HMAC, never readable.

Django's PasswordResetTokenGenerator works the same way, but checks its age against PASSWORD_RESET_TIMEOUT (the
set-password links' lifetime); these links have their own, read from WebhookSettings.login_link_lifetime_hours
each time a link is checked, so a shorter lifetime set in the admin applies to links already sent.

Staff and superusers never get one (their accounts open the admin: they log in with a password, behind django-axes),
and a link made before someone became staff is refused.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import base36_to_int, int_to_base36
from django.views.decorators.debug import sensitive_variables

from settings_app.models import WebhookSettings

from ..models import User

KEY_SALT = "users.services.login_links"
# A link issued by another host whose clock runs a little ahead is still good; a timestamp further ahead is no
# link this site made (without the key nobody can make one anyway).
CLOCK_SKEW_SECONDS = 300
MAX_TOKEN_LENGTH = 100  # ours are about 45 characters


class LoginLinkRefused(ValueError):
    """No login link can be made: the message says why."""


@dataclass(frozen=True)
class LinkCheck:
    """What a token turned out to be: `user` to log in, or None and the `reason` (for a log line, never for the
    visitor). `user_id` is the id the token names, verified or not: proof of nothing, only good for recognising a
    person who opens their own used link again while logged in."""

    user: User | None
    reason: str = ""
    user_id: int | None = None


def current_time() -> int:
    """The clock the tokens are made and checked with (tests move it)."""
    return int(time.time())


def refusal_reason(user: User) -> str:
    """Why `user` may not have a login link ("" when they may)."""
    if user.pk is None:
        return "No login link for a user who is not saved yet."
    if user.is_staff or user.is_superuser:
        return "No login link for a staff or superuser account: it logs in with its password."
    if not user.is_active:
        return "No login link for an inactive account."
    return ""


def login_url(user: User) -> str:
    """An absolute single-use login URL for `user` (SITE_BASE_URL + /accounts/login-link/<token>/). Raises
    LoginLinkRefused for staff, superusers and inactive users, and while SITE_BASE_URL is empty."""
    reason = refusal_reason(user)
    if reason:
        raise LoginLinkRefused(reason)
    base = settings.SITE_BASE_URL.rstrip("/")
    if not base:
        # A relative link in an email goes nowhere, and the request's host is not known here (a worker makes it).
        raise LoginLinkRefused(
            "SITE_BASE_URL is not set: a login link sent in an email must be an absolute URL. Set SITE_BASE_URL to "
            "the site's public address (e.g. https://mydomain.com)."
        )
    return base + reverse("login-link", kwargs={"token": make_token(user)})


@sensitive_variables("digest")
def make_token(user: User, issued: int | None = None) -> str:
    issued = current_time() if issued is None else issued
    digest = _digest(user, issued, settings.SECRET_KEY)
    return f"{int_to_base36(user.pk)}-{int_to_base36(issued)}-{digest}"


@sensitive_variables("token", "digest")
def check_token(token: str) -> LinkCheck:
    """Whether `token` logs someone in now, and whom. Nothing is changed: use_up() (then logging in, which updates
    last_login) is what uses the link up."""
    if len(token) > MAX_TOKEN_LENGTH:
        return LinkCheck(None, "malformed")
    try:
        user_b36, issued_b36, digest = token.split("-")
        user_id, issued = base36_to_int(user_b36), base36_to_int(issued_b36)
    except ValueError:
        return LinkCheck(None, "malformed")
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return LinkCheck(None, "no such user", user_id)
    # SECRET_KEY_FALLBACKS: links sent before a key rotation keep working until their lifetime ends.
    secrets = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    if not any(constant_time_compare(digest, _digest(user, issued, secret)) for secret in secrets):
        # Used already (last_login changed), password or email changed since, or not made by this site.
        return LinkCheck(None, "used, outdated or not ours", user_id)
    age = current_time() - issued
    lifetime = WebhookSettings.cached().login_link_lifetime_hours * 3600
    if age > lifetime or age < -CLOCK_SKEW_SECONDS:
        return LinkCheck(None, "expired", user.pk)
    if user.is_staff or user.is_superuser:
        return LinkCheck(None, "staff or superuser", user.pk)
    if not user.is_active:
        return LinkCheck(None, "inactive", user.pk)
    return LinkCheck(user, "", user.pk)


def use_up(user: User) -> bool:
    """Mark the link `user` came with as used, unless another request has just done so (two clicks at once, a
    scanner that POSTs): True for the one request that may log in. A conditional UPDATE of last_login, the state
    every link of theirs is signed over; login() then sets it again."""
    return bool(User.objects.filter(pk=user.pk, last_login=user.last_login).update(last_login=timezone.now()))


def user_for_token(token: str) -> User | None:
    """The user `token` logs in now, or None (malformed, forged, used, expired, outdated, staff or inactive)."""
    return check_token(token).user


def _digest(user: User, issued: int, secret) -> str:
    # As Django's reset tokens: last_login without microseconds or time zone, which some databases do not keep.
    last_login = "" if user.last_login is None else user.last_login.replace(microsecond=0, tzinfo=None)
    state = f"{user.pk}|{user.password}|{last_login}|{user.email}|{issued}"
    return salted_hmac(KEY_SALT, state, secret=secret, algorithm="sha256").hexdigest()[::2]
