"""The webhook actions as account rules: update_tags, update and add.

Each action runs under the contact's lock in one transaction (so concurrent deliveries for one person run one
after another and a failure leaves the user as it was); work that must follow a commit — returning a generated
password to Customer.io, the welcome email, signals — happens after it.
"""

import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cio import get_client
from cio.errors import CustomerIOError
from settings_app.models import FieldMapping, WebhookSettings, cached_field_mappings

from ..models import ActivityLog, Role, User
from ..redaction import redact
from ..signals import user_imported
from .activity import Activity, log_activity
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
class AccountRules:
    """What the account rules read from the database — webhook settings, active field mappings, roles — read once
    per webhook processing, or once for a whole backfill."""

    site_settings: WebhookSettings
    mappings: list[FieldMapping]
    _roles: dict[str, tuple[Role | None, str]] = field(default_factory=dict, repr=False)
    _default_role: Role | None = field(default=None, repr=False)
    _secret_attributes: set[str] | None = field(default=None, repr=False)

    @classmethod
    def load(cls) -> "AccountRules":
        return cls(WebhookSettings.cached(), active_mappings())

    @property
    def return_field(self) -> str:
        """The Customer.io attribute that receives generated passwords ("" when none is chosen)."""
        return self.site_settings.return_password_field.strip()

    @property
    def secret_attributes(self) -> set[str]:
        """Customer.io attributes that hold passwords whatever their names: the Return Password field and every
        attribute mapped to the password. Masked wherever attributes are logged or stored."""
        if self._secret_attributes is None:
            self._secret_attributes = secret_attribute_names(self.site_settings)
        return self._secret_attributes

    @property
    def returns_passwords(self) -> bool:
        """Return Password is on with a field: new users get a generated password, written back to Customer.io."""
        return self.site_settings.return_password and bool(self.return_field)

    def welcome_email_due(self, send_notification: bool) -> bool:
        return send_notification or self.site_settings.send_welcome_email

    def assignable_role(self, requested: str) -> tuple[Role | None, str]:
        """find_assignable_role, remembered: a backfill asks for the same few roles thousands of times."""
        key = (requested or "").strip().lower()
        if key not in self._roles:
            self._roles[key] = find_assignable_role(requested)
        return self._roles[key]

    def default_role(self) -> Role:
        if self._default_role is None:
            self._default_role = Role.get_default()
        return self._default_role


@dataclass
class NewAccount:
    """The user the account rules make for a person: unsaved, with no password hash yet (hashing is slow, so the
    caller chooses where it happens)."""

    user: User
    password: str | None  # to hash: mapped from Customer.io, or generated; None leaves the password unusable
    generated: bool  # generated here, so owed to Customer.io's Return Password field
    role_notice: str  # why the requested role was not used, when it was not
    filled_fields: list[str]  # the mapped fields Customer.io filled

    def activities(self) -> list[Activity]:
        user = self.user
        lines = [
            Activity(
                f"Created user {user.get_username()} ({user.email}) with role {user.role.name}",
                user=user,
                context={"created": True, "role": user.role.slug},
            )
        ]
        if self.role_notice:
            lines.append(
                Activity(
                    f"{self.role_notice} Using the default role {user.role.name}.",
                    level=ActivityLog.Level.NOTICE,
                    user=user,
                )
            )
        return lines


@dataclass
class PersonUpdate:
    """What applying a person's attributes did to an existing user (unsaved)."""

    fields: list[str]  # the user fields the attributes changed
    notices: list[str]
    dirty: bool  # something to save: a changed field, or a newly linked Customer.io id


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
    # The person's segments when already read (see _read_before_writing).
    segments: list[dict] | None = None


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
    _read_before_writing(request, creates=False, needs_person=False)
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
    _read_before_writing(request, creates=False, needs_person=True)
    with transaction.atomic():
        lock_contact(request.contact)
        user, person = _find_existing(request)
        if user is None or is_protected(user):
            return _skip("update", request, user)
        person = person or _fetch_person(request)
        updated_fields = _update_existing(user, person, request, AccountRules.load())
        change = _load_tags(user, client, request)
    _finish_account(user, request)
    return ActionResult("update", user=user, tags=change.names, updated_fields=updated_fields)


def add(request: ActionRequest) -> ActionResult:
    """Create the user from their Customer.io attributes, or update them when they already exist (never a
    duplicate). A generated password is returned to Customer.io when Return Password is set up."""
    client = get_client()
    rules = AccountRules.load()
    generated_password = None
    _read_before_writing(request, creates=True, needs_person=True)
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
                    user, generated_password, updated_fields = _create_user(person, request, rules)
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
            updated_fields = _update_existing(user, person, request, rules)
        change = _load_tags(user, client, request)
        if created:
            send_on_commit(user_imported, user=user, delivery=request.delivery)
    _finish_account(user, request, rules, generated_password)
    return ActionResult("add", user=user, created=created, tags=change.names, updated_fields=updated_fields)


ACTIONS = {"update_tags": update_tags, "update": update, "add": add}


# Finding people ----------------------------------------------------------------------------------------------------


def _identifier(contact: Contact) -> tuple[str, str]:
    """How to name the contact to the App API: (identifier, id_type)."""
    return contact.value, contact.kind


def _read_before_writing(request: ActionRequest, *, creates: bool, needs_person: bool) -> None:
    """On SQLite, make the Customer.io reads before the transaction. SQLite has one writer at a time and an
    IMMEDIATE transaction holds the write lock from its start, so reads made inside it would stall every other
    write on the site (webhook accepts included) for as long as Customer.io takes. Nothing is lost by reading first:
    SQLite serializes the writes, and a concurrent creation still meets the unique email constraint. On PostgreSQL
    the per-contact row lock blocks only that contact, so the reads stay under it."""
    if connection.vendor != "sqlite" or request.contact.kind != "email":
        return
    user = find_user(request.contact)
    if (user is None and not creates) or (user is not None and is_protected(user)):
        return  # the transaction will skip this contact without calling anyone
    if needs_person:
        request.person = _fetch_person(request)
    if request.segments is None:
        request.segments = get_client().get_segments(request.contact.value, "email", deadline=request.deadline)


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
    segments = request.segments
    if segments is None:
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


def _update_existing(user: User, person: dict, request: ActionRequest, rules: AccountRules) -> list[str]:
    change = apply_person(user, person, rules, requested_role=request.role)
    if change.dirty:
        user.save()
    attributes = person.get("attributes") or {}
    loaded = meta_log_context(attributes, rules)
    log_activity(request.source, meta_log_message(loaded), user=user, context=loaded)
    for notice in change.notices:
        log_activity(request.source, notice, level=ActivityLog.Level.NOTICE, user=user)
    return change.fields


def apply_person(
    user: User, person: dict, rules: AccountRules, *, requested_role: str = "", taken_cio_ids: Collection | None = None
) -> PersonUpdate:
    """Mapped attributes onto an existing user, unsaved. Never their username or password (WP Fusion resets a
    mapped password here; we do not), and a role only when it may be assigned. `taken_cio_ids`: the Customer.io
    ids other users hold, when the caller has looked them up for many people at once."""
    attributes = person.get("attributes") or {}
    values = mapped_values(attributes, rules.mappings)
    updated_fields, notices = apply_profile_fields(user, values)
    requested_role = values.get("role") or requested_role
    if requested_role:
        role, why_not = rules.assignable_role(requested_role)
        if role is None:
            notices.append(f"{why_not} Role unchanged.")
        elif role.pk != user.role_id:
            user.role = role
            updated_fields.append("role")
    # Linking the Customer.io id is bookkeeping, not a field the journey changed: saved, not reported.
    adopted = adopt_cio_id(user, person, taken_cio_ids)
    return PersonUpdate(fields=updated_fields, notices=notices, dirty=adopted or bool(updated_fields))


def person_email(person: dict, known_email: str = "") -> str:
    """The email a new user gets: the one the contact was named by, else Customer.io's identifier or attribute."""
    identifiers = person.get("identifiers") or {}
    attributes = person.get("attributes") or {}
    return (known_email or identifiers.get("email") or attributes.get("email") or "").strip()


def _create_user(person: dict, request: ActionRequest, rules: AccountRules):
    known_email = request.contact.value if request.contact.kind == "email" else ""
    email = person_email(person, known_email)
    if not email:
        raise ContactHasNoEmail(f"Customer.io has no email address for {request.contact}")
    account = plan_new_account(
        person, email, rules, requested_role=request.role, send_notification=request.send_notification
    )
    user = account.user
    if account.password is not None:
        user.set_password(account.password)
    if account.generated:
        user.password_return_due = True
        # This processing returns it right after the commit; nobody else may start another return meanwhile.
        user.password_return_claimed_until = timezone.now() + PASSWORD_RETURN_CLAIM
    user.save()
    for line in account.activities():
        log_activity(request.source, line.message, level=line.level, user=user, context=line.context)
    loaded = meta_log_context(person.get("attributes") or {}, rules)
    log_activity(request.source, meta_log_message(loaded), user=user, context=loaded)
    return user, account.password if account.generated else None, account.filled_fields


def plan_new_account(
    person: dict,
    email: str,
    rules: AccountRules,
    *,
    requested_role: str = "",
    send_notification: bool = False,
    username: str | None = None,
    taken_cio_ids: Collection | None = None,
) -> NewAccount:
    """The user the `add` rules create for a person: username (mapped user_login, else the username format),
    role (mapped role field, else the requested one, falling back to the default), welcome email flag, password
    (mapped user_pass; else generated when Return Password is on with a field; else unusable), mapped fields and
    the Customer.io id. `username`: one the caller already chose (see pick_usernames)."""
    attributes = person.get("attributes") or {}
    values = mapped_values(attributes, rules.mappings)
    role, why_not = rules.assignable_role(values.get("role") or requested_role)
    user = User(
        username=username or pick_usernames([new_username_base(person, email, rules)])[0],
        email=email.strip(),
        role=role or rules.default_role(),
        is_staff=False,
        is_superuser=False,
        welcome_email_due=rules.welcome_email_due(send_notification),
    )
    password, generated = None, False
    if values.get("password"):
        password = values["password"]
    elif rules.returns_passwords:
        password, generated = generate_password(), True
        user.password_return_due = True
    else:
        # Nobody could know a generated password: the person sets theirs through the welcome / reset link.
        user.set_unusable_password()
    apply_profile_fields(user, values)
    adopt_cio_id(user, person, taken_cio_ids)
    return NewAccount(
        user=user,
        password=password,
        generated=generated,
        role_notice=why_not,
        filled_fields=sorted(set(values) - {"password"}),
    )


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def adopt_cio_id(user: User, person: dict, taken_cio_ids: Collection | None = None) -> bool:
    """Link the user to the person's Customer.io id unless they have one or another user holds it."""
    cio_id = (person.get("identifiers") or {}).get("cio_id") or person.get("cio_id")
    if not cio_id or user.cio_id:
        return False
    if taken_cio_ids is not None:
        if cio_id in taken_cio_ids:
            return False
    elif User.objects.filter(cio_id=cio_id).exclude(pk=user.pk).exists():
        return False
    user.cio_id = cio_id
    return True


def secret_attribute_names(site_settings: WebhookSettings) -> set[str]:
    """See AccountRules.secret_attributes (inactive password mappings count too: they may be turned on)."""
    names = {mapping.cio_attribute for mapping in cached_field_mappings() if mapping.user_field == "password"}
    if site_settings.return_password_field.strip():
        names.add(site_settings.return_password_field.strip())
    return names


def meta_log_context(attributes: dict, rules: AccountRules) -> dict:
    """The mapped attributes for the activity log, redacted (password attributes too, whatever their names)."""
    return redact(logged_values(attributes, rules.mappings), also=rules.secret_attributes)


def meta_log_message(loaded: dict) -> str:
    summary = ", ".join(f"{key}: {value}" for key, value in loaded.items())
    return f"Loaded meta data from Customer.io: {summary or '(nothing mapped)'}"


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


# After the commit --------------------------------------------------------------------------------------------------


def _finish_account(user, request, rules: AccountRules | None = None, generated_password=None) -> None:
    """Return a generated password still owed to Customer.io, then send a welcome email still owed (once the
    password is final, so its set-password link stays valid)."""
    if not (user.password_return_due or user.welcome_email_due):
        return
    rules = rules or AccountRules.load()
    if user.password_return_due:
        _return_password(user, request, rules, generated_password)
    if user.welcome_email_due and not user.password_return_due:
        send_due_welcome_email(user, request.source)


def send_due_welcome_email(user: User, source) -> bool:
    """Send the welcome email the user is owed. The conditional update claims it, so that concurrent processings
    send it once."""
    if not User.objects.filter(pk=user.pk, welcome_email_due=True).update(welcome_email_due=False):
        return False
    user.welcome_email_due = False
    return send_welcome_email(User.objects.get(pk=user.pk), source=source)


def _return_password(user: User, request: ActionRequest, rules: AccountRules, password) -> None:
    field_name = rules.return_field
    if not rules.returns_passwords:
        settle_password_returns([user])
        return
    if password is None:
        # Owed from an earlier attempt: claim it, then (unless they have logged in meanwhile) set a fresh one.
        if not claim_owed_password_return(user):
            user.refresh_from_db(fields=["password_return_due"])
            return  # settled already, or another processing is returning it right now
        user.refresh_from_db(fields=["last_login", "password"])
        if user.last_login is not None:
            settle_password_returns([user])
            log_activity(request.source, logged_in_meanwhile_message(user), level=ActivityLog.Level.NOTICE, user=user)
            return
        password = generate_password()
        user.set_password(password)
        user.password_return_due = True  # still owed until Customer.io accepts this one
        user.save(update_fields=["password", "password_return_due"])
    try:
        # By cio_id when known: Customer.io answers 200 to an update for an email nobody has (say, after an email
        # change), and the password would be "returned" to no one.
        identifier = f"cio_{user.cio_id}" if user.cio_id else user.email
        get_client().identify(identifier, {field_name: password}, deadline=request.deadline)
    except CustomerIOError as exc:
        User.objects.filter(pk=user.pk).update(password_return_claimed_until=None)
        log_activity(
            request.source,
            password_return_failed_message(field_name, str(exc)),
            level=ActivityLog.Level.ERROR,
            user=user,
        )
        raise PasswordReturnFailed(f"Customer.io did not accept the returned password ({type(exc).__name__})") from exc
    settle_password_returns([user])
    log_activity(request.source, f"Returned generated password to Customer.io field {field_name}", user=user)


def claim_owed_password_return(user: User) -> bool:
    """Take over a password return owed from an earlier attempt, unless another processing holds it right now."""
    now = timezone.now()
    return bool(
        User.objects.filter(pk=user.pk, password_return_due=True)
        .exclude(password_return_claimed_until__gt=now)
        .update(password_return_claimed_until=now + PASSWORD_RETURN_CLAIM)
    )


def settle_password_returns(users: list[User]) -> None:
    """Nothing is owed to Customer.io for these users any more (returned, or no longer to be returned)."""
    User.objects.filter(pk__in=[user.pk for user in users]).update(
        password_return_due=False, password_return_claimed_until=None
    )
    for user in users:
        user.password_return_due = False
        user.password_return_claimed_until = None


def logged_in_meanwhile_message(user: User) -> str:
    return f"{user.email} has logged in since; their password was not replaced or returned"


def password_return_failed_message(field_name: str, reason: str) -> str:
    return f"Could not return the generated password to Customer.io field {field_name}: {reason}"


__all__ = [
    "ACTIONS",
    "PASSWORD_RETURN_CLAIM",
    "AccountRules",
    "ActionRequest",
    "ActionResult",
    "ContactHasNoEmail",
    "NewAccount",
    "PasswordReturnFailed",
    "PersonUpdate",
    "add",
    "adopt_cio_id",
    "apply_person",
    "claim_owed_password_return",
    "generate_password",
    "meta_log_context",
    "meta_log_message",
    "new_username_base",
    "person_email",
    "pick_usernames",
    "plan_new_account",
    "send_due_welcome_email",
    "settle_password_returns",
    "update",
    "update_tags",
]
