"""The webhook actions as account rules: update_tags, update and add.

Each action runs under the contact's lock in one transaction (so concurrent deliveries for one person run one
after another and a failure leaves the user as it was); work that must follow a commit — returning a generated
password to Customer.io, the welcome email, signals — happens after it.
"""

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from cio import get_client
from cio.errors import CustomerIOError
from settings_app.models import WebhookSettings

from ..models import ActivityLog, Role, User
from ..redaction import redact
from ..signals import user_imported
from .activity import log_activity
from .attributes import active_mappings, apply_profile_fields, logged_values, mapped_values
from .contacts import Contact, find_user, find_user_for_person, is_protected, lock_contact
from .roles import find_assignable_role
from .tags import TagChange, replace_tags, send_on_commit
from .welcome import send_welcome_email

GENERATED_PASSWORD_BYTES = 18  # 24 url-safe characters
USERNAME_MAX_LENGTH = 150
# How long one processing may take to return a password before another may take over (it died).
PASSWORD_RETURN_CLAIM = timedelta(seconds=60)

WEBHOOK = ActivityLog.Source.WEBHOOK


class ContactHasNoEmail(Exception):
    """Customer.io knows the person but has no email for them, and every site user needs one."""


class PasswordReturnFailed(Exception):
    """Customer.io did not accept the returned password. The user stays marked as owing one (retry later)."""


@dataclass
class ActionRequest:
    contact: Contact
    role: str = ""  # the URL's role= parameter
    send_notification: bool = False
    deadline: float | None = None  # time.monotonic() value covering every Customer.io call of this processing
    delivery: object = None  # the WebhookDelivery, passed on to user_imported
    source: str = WEBHOOK
    # The person's attributes when the caller already has them (sent in the webhook body, or fetched for many
    # contacts in one batch call): {"identifiers": {...}, "attributes": {...}}. Saves the attributes call.
    person: dict | None = None


@dataclass
class ActionResult:
    action: str
    status: str = "ok"  # "ok" | "skipped"
    user: User | None = None
    created: bool = False
    tags: list[str] = field(default_factory=list)
    updated_fields: list[str] = field(default_factory=list)
    reason: str = ""

    def as_dict(self) -> dict:
        if self.status == "skipped":
            return {"status": "skipped", "action": self.action, "reason": self.reason}
        return {
            "status": "ok",
            "action": self.action,
            "user_id": self.user.pk if self.user else None,
            "created": self.created,
            "tags": self.tags,
            "updated_fields": self.updated_fields,
        }


# The actions ------------------------------------------------------------------------------------------------------


def update_tags(request: ActionRequest) -> ActionResult:
    """Replace the user's tags with their Customer.io segments (one App API call)."""
    client = get_client()
    with transaction.atomic():
        lock_contact(request.contact)
        user, person = _find_existing(request)
        if user is None or is_protected(user):
            return _skip("update_tags", request, user)
        change = _load_tags(user, client, request)
    _finish_account(user, request)
    return ActionResult("update_tags", user=user, tags=change.names)


def update(request: ActionRequest) -> ActionResult:
    """Pull the person's attributes onto the user through the field mappings, then their tags (two calls)."""
    client = get_client()
    with transaction.atomic():
        lock_contact(request.contact)
        user, person = _find_existing(request)
        if user is None or is_protected(user):
            return _skip("update", request, user)
        person = person or _fetch_person(request)
        updated_fields = _update_existing(user, person, request)
        change = _load_tags(user, client, request)
    _finish_account(user, request)
    return ActionResult("update", user=user, tags=change.names, updated_fields=updated_fields)


def add(request: ActionRequest) -> ActionResult:
    """Create the user from their Customer.io attributes, or update them when they already exist (never a
    duplicate). A generated password is returned to Customer.io when Return Password is set up."""
    client = get_client()
    site_settings = WebhookSettings.load()
    generated_password = None
    with transaction.atomic():
        lock_contact(request.contact)
        user = find_user(request.contact)
        if user is not None and is_protected(user):
            return _skip("add", request, user)
        person = _fetch_person(request)
        user = user or find_user_for_person(person)
        if user is not None and is_protected(user):
            return _skip("add", request, user)
        created = False
        if user is None:
            try:
                with transaction.atomic():
                    user, generated_password, updated_fields = _create_user(person, request, site_settings)
                created = True
            except IntegrityError:
                # Someone else created them between our lookup and our insert (a different identifier's lock):
                # carry on as for an existing user — never two users, never a 500.
                user = find_user_for_person(person) or find_user(request.contact)
                if user is None:
                    raise
                if is_protected(user):
                    return _skip("add", request, user)
        if not created:
            updated_fields = _update_existing(user, person, request)
        change = _load_tags(user, client, request)
        if created:
            send_on_commit(user_imported, user=user, delivery=request.delivery)
    _finish_account(user, request, site_settings, generated_password)
    return ActionResult("add", user=user, created=created, tags=change.names, updated_fields=updated_fields)


ACTIONS = {"update_tags": update_tags, "update": update, "add": add}


# Finding people ----------------------------------------------------------------------------------------------------


def _identifier(contact: Contact) -> tuple[str, str]:
    """How to name the contact to the App API: (identifier, id_type)."""
    return contact.value, contact.kind


def _fetch_person(request: ActionRequest) -> dict:
    if request.person is not None:
        return request.person
    return get_client().get_attributes(*_identifier(request.contact), deadline=request.deadline)


def _find_existing(request: ActionRequest) -> tuple[User | None, dict | None]:
    """The local user. A contact given by email or known cio_id costs no call; otherwise Customer.io tells us who
    it is (and that answer is reused as the person's attributes)."""
    user = find_user(request.contact)
    if user is not None or request.contact.kind == "email":
        return user, request.person
    person = _fetch_person(request)
    return find_user_for_person(person), person


def _skip(action: str, request: ActionRequest, user: User | None) -> ActionResult:
    if user is None:
        log_activity(
            request.source,
            f"No matching user found for {request.contact} ({action})",
            level=ActivityLog.Level.NOTICE,
            context={"action": action, "contact": str(request.contact)},
        )
        return ActionResult(action, status="skipped", reason="no_matching_user")
    log_activity(
        request.source,
        f"Refused to change staff account {user.get_username()} from a webhook ({action})",
        level=ActivityLog.Level.WARNING,
        user=user,
    )
    return ActionResult(action, status="skipped", reason="protected_account", user=user)


# Changing people ---------------------------------------------------------------------------------------------------


def _load_tags(user: User, client, request: ActionRequest) -> TagChange:
    identifier, id_type = (user.cio_id, "cio_id") if user.cio_id else (user.email, "email")
    if request.contact.kind == "email":
        identifier, id_type = request.contact.value, "email"
    segments = client.get_segments(identifier, id_type, deadline=request.deadline)
    change = replace_tags(user, segments)
    log_activity(
        request.source,
        f"Loaded tags for {user.email}: {', '.join(change.names) or '(none)'}",
        user=user,
        context={
            "applied": [str(tag) for tag in change.applied],
            "removed": [str(tag) for tag in change.removed],
        },
    )
    return change


def _update_existing(user: User, person: dict, request: ActionRequest) -> list[str]:
    """Mapped attributes onto an existing user. Never their username or password (WP Fusion resets a mapped
    password here; we do not), and a role only when it may be assigned."""
    attributes = person.get("attributes") or {}
    mappings = active_mappings()
    values = mapped_values(attributes, mappings)
    updated_fields, notices = apply_profile_fields(user, values)
    requested_role = values.get("role") or request.role
    if requested_role:
        role, why_not = find_assignable_role(requested_role)
        if role is None:
            notices.append(f"{why_not} Role unchanged.")
        elif role.pk != user.role_id:
            user.role = role
            updated_fields.append("role")
    # Linking the Customer.io id is bookkeeping, not a field the journey changed: saved, not reported.
    if _adopt_cio_id(user, person) or updated_fields:
        user.save()
    _log_meta(user, attributes, mappings, request)
    for notice in notices:
        log_activity(request.source, notice, level=ActivityLog.Level.NOTICE, user=user)
    return updated_fields


def _create_user(person: dict, request: ActionRequest, site_settings: WebhookSettings):
    attributes = person.get("attributes") or {}
    identifiers = person.get("identifiers") or {}
    mappings = active_mappings()
    values = mapped_values(attributes, mappings)
    email = request.contact.value if request.contact.kind == "email" else identifiers.get("email") or ""
    email = email or attributes.get("email") or ""
    if not email.strip():
        raise ContactHasNoEmail(f"Customer.io has no email address for {request.contact}")

    role, why_not = find_assignable_role(values.get("role") or request.role)
    user = User(
        username=_available_username(_username_base(values, site_settings.username_format, email)),
        email=email.strip(),
        role=role or Role.get_default(),
        is_staff=False,
        is_superuser=False,
        welcome_email_due=request.send_notification or site_settings.send_welcome_email,
    )
    generated_password = None
    if values.get("password"):
        user.set_password(values["password"])
    elif site_settings.return_password and site_settings.return_password_field.strip():
        generated_password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        user.set_password(generated_password)
        user.password_return_due = True
        # This processing returns it right after the commit; nobody else may start another return meanwhile.
        user.password_return_claimed_until = timezone.now() + PASSWORD_RETURN_CLAIM
    else:
        # Nobody could know a generated password: the person sets theirs through the welcome / reset link.
        user.set_unusable_password()
    apply_profile_fields(user, values)
    _adopt_cio_id(user, person)
    user.save()

    log_activity(
        request.source,
        f"Created user {user.get_username()} ({user.email}) with role {user.role.name}",
        user=user,
        context={"created": True, "role": user.role.slug},
    )
    if why_not:
        log_activity(
            request.source,
            f"{why_not} Using the default role {user.role.name}.",
            level=ActivityLog.Level.NOTICE,
            user=user,
        )
    _log_meta(user, attributes, mappings, request)
    return user, generated_password, sorted(set(values) - {"password"})


def _adopt_cio_id(user: User, person: dict) -> bool:
    cio_id = (person.get("identifiers") or {}).get("cio_id") or person.get("cio_id")
    if not cio_id or user.cio_id == cio_id or user.cio_id:
        return False
    if User.objects.filter(cio_id=cio_id).exclude(pk=user.pk).exists():
        return False
    user.cio_id = cio_id
    return True


def _log_meta(user: User, attributes: dict, mappings, request: ActionRequest) -> None:
    return_field = WebhookSettings.load().return_password_field.strip()
    loaded = redact(logged_values(attributes, mappings), also={return_field} if return_field else set())
    summary = ", ".join(f"{key}: {value}" for key, value in loaded.items())
    log_activity(
        request.source, f"Loaded meta data from Customer.io: {summary or '(nothing mapped)'}", user=user, context=loaded
    )


_USERNAME_INVALID = re.compile(r"[^\w.@+-]")


def _username_base(values: dict, username_format: str, email: str) -> str:
    if values.get("username", "").strip():
        return values["username"].strip()
    first = re.sub(r"\s+", "", values.get("first_name", ""))
    last = re.sub(r"\s+", "", values.get("last_name", ""))
    if username_format == WebhookSettings.UsernameFormat.FLNAME and (first or last):
        return f"{first.capitalize()}{last.capitalize()}"
    if username_format == WebhookSettings.UsernameFormat.FNAMENUM and first:
        return f"{first.capitalize()}{secrets.randbelow(99999) + 1}"
    return email.strip()


def _available_username(base: str) -> str:
    """A valid Django username, unique on the site: invalid characters dropped, 150 characters at most, and a
    numeric suffix when it is taken."""
    candidate = _USERNAME_INVALID.sub("", base)[:USERNAME_MAX_LENGTH] or "user"
    try:
        UnicodeUsernameValidator()(candidate)
    except Exception:
        candidate = "user"
    if not User.objects.filter(username=candidate).exists():
        return candidate
    taken = set(User.objects.filter(username__startswith=candidate[:140]).values_list("username", flat=True))
    for number in range(2, 1_000_000):
        suffix = str(number)
        option = candidate[: USERNAME_MAX_LENGTH - len(suffix)] + suffix
        if option not in taken:
            return option
    raise IntegrityError("no free username")


# After the commit --------------------------------------------------------------------------------------------------


def _finish_account(user, request, site_settings=None, generated_password=None) -> None:
    """Return a generated password still owed to Customer.io, then send a welcome email still owed (once the
    password is final, so its set-password link stays valid)."""
    if not (user.password_return_due or user.welcome_email_due):
        return
    site_settings = site_settings or WebhookSettings.load()
    if user.password_return_due:
        _return_password(user, request, site_settings, generated_password)
    # The conditional update claims the email, so that concurrent deliveries send it once.
    if (
        user.welcome_email_due
        and not user.password_return_due
        and User.objects.filter(pk=user.pk, welcome_email_due=True).update(welcome_email_due=False)
    ):
        user.welcome_email_due = False
        send_welcome_email(User.objects.get(pk=user.pk), source=request.source)


def _return_password(user: User, request: ActionRequest, site_settings: WebhookSettings, password) -> None:
    field_name = site_settings.return_password_field.strip()
    if not (site_settings.return_password and field_name):
        _settle_password_return(user)
        return
    if password is None:
        # Owed from an earlier attempt: claim it, then (unless they have logged in meanwhile) set a fresh one.
        now = timezone.now()
        claimed = (
            User.objects.filter(pk=user.pk, password_return_due=True)
            .exclude(password_return_claimed_until__gt=now)
            .update(password_return_claimed_until=now + PASSWORD_RETURN_CLAIM)
        )
        if not claimed:
            user.refresh_from_db(fields=["password_return_due"])
            return  # settled already, or another processing is returning it right now
        user.refresh_from_db(fields=["last_login", "password"])
        if user.last_login is not None:
            _settle_password_return(user)
            log_activity(
                request.source,
                f"{user.email} has logged in since; their password was not replaced or returned",
                level=ActivityLog.Level.NOTICE,
                user=user,
            )
            return
        password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        user.set_password(password)
        user.save(update_fields=["password"])
    try:
        get_client().identify(user.email, {field_name: password}, deadline=request.deadline)
    except CustomerIOError as exc:
        User.objects.filter(pk=user.pk).update(password_return_claimed_until=None)
        log_activity(
            request.source,
            f"Could not return the generated password to Customer.io field {field_name}: {exc}",
            level=ActivityLog.Level.ERROR,
            user=user,
        )
        raise PasswordReturnFailed(f"Customer.io did not accept the returned password ({type(exc).__name__})") from exc
    _settle_password_return(user)
    log_activity(request.source, f"Returned generated password to Customer.io field {field_name}", user=user)


def _settle_password_return(user: User) -> None:
    User.objects.filter(pk=user.pk).update(password_return_due=False, password_return_claimed_until=None)
    user.password_return_due = False
    user.password_return_claimed_until = None


__all__ = [
    "ACTIONS",
    "ActionRequest",
    "ActionResult",
    "ContactHasNoEmail",
    "PasswordReturnFailed",
    "add",
    "update",
    "update_tags",
]
