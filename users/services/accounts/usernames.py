"""New users' usernames: the one a person would like (mapped user_login, else the username format), made valid and
unique on the site."""

import re
import secrets

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import IntegrityError, transaction

from settings_app.models import WebhookSettings

from ...models import User
from ..attributes import mapped_values
from .rules import AccountRules

USERNAME_MAX_LENGTH = 150
# Inserts of one new user that may each lose its username to a concurrent insert: each loss means another user took
# that name and committed, so this bounds the number of people choosing the same name at the same moment.
SAVE_ATTEMPTS = 100

_USERNAME_INVALID = re.compile(r"[^\w.@+-]")


def new_username_base(person: dict, email: str, rules: AccountRules) -> str:
    """The username a new user would like: mapped user_login, else per the username format (before uniqueness)."""
    values = mapped_values(person.get("attributes") or {}, rules.mappings)
    if values.get("username", "").strip():
        return values["username"].strip()
    first = re.sub(r"\s+", "", values.get("first_name", ""))
    last = re.sub(r"\s+", "", values.get("last_name", ""))
    username_format = rules.site_settings.username_format
    if username_format == WebhookSettings.UsernameFormat.FLNAME and (first or last):
        return f"{first.capitalize()}{last.capitalize()}"
    if username_format == WebhookSettings.UsernameFormat.FNAMENUM and first:
        return f"{first.capitalize()}{secrets.randbelow(99999) + 1}"
    return email.strip()


def pick_usernames(bases: list[str]) -> list[str]:
    """Valid Django usernames, unique on the site and among themselves, one per base, in order: invalid characters
    dropped, 150 characters at most, and a numeric suffix when the name is taken. One query for the lot, plus one
    per name that is taken."""
    candidates = [_valid_username(base) for base in bases]
    taken = set(User.objects.filter(username__in=set(candidates)).values_list("username", flat=True))
    chosen: list[str] = []
    for candidate in candidates:
        if candidate in taken:
            candidate = _suffixed_username(candidate, taken)
        taken.add(candidate)
        chosen.append(candidate)
    return chosen


def save_new_user(user: User, username_base: str) -> None:
    """Insert a new user whose username was picked from `username_base`. Concurrent processings for different
    people who would like the same name (twenty "Sam Same"s) each saw it free; the loser of each race takes the next
    free suffix instead of failing. Any other conflict (the person's email or Customer.io id) is the caller's."""
    for _attempt in range(SAVE_ATTEMPTS):
        try:
            with transaction.atomic():
                user.save()
            return
        except IntegrityError:
            if not User.objects.filter(username=user.username).exists():
                raise
            user.username = pick_usernames([username_base])[0]
    raise IntegrityError(f"No free username for {username_base!r} after {SAVE_ATTEMPTS} attempts")


def _valid_username(base: str) -> str:
    candidate = _USERNAME_INVALID.sub("", base)[:USERNAME_MAX_LENGTH] or "user"
    try:
        UnicodeUsernameValidator()(candidate)
    except Exception:
        candidate = "user"
    return candidate


def _suffixed_username(candidate: str, reserved: set[str]) -> str:
    taken = set(User.objects.filter(username__startswith=candidate[:140]).values_list("username", flat=True))
    for number in range(2, 1_000_000):
        suffix = str(number)
        option = candidate[: USERNAME_MAX_LENGTH - len(suffix)] + suffix
        if option not in taken and option not in reserved:
            return option
    raise IntegrityError("no free username")
