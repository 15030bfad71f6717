"""A person's Customer.io attributes applied to a user: a new user planned from them, or an existing user updated
through the field mappings — and how that is logged (never a password)."""

from collections.abc import Collection
from dataclasses import dataclass, field

from settings_app.redaction import redact

from ...models import ActivityLog, Role, User
from ..activity import Activity
from ..attributes import apply_profile_fields, logged_values, mapped_values
from .passwords import generate_password
from .rules import AccountRules
from .usernames import new_username_base, pick_usernames


@dataclass
class NewAccount:
    """The user the account rules make for a person: unsaved, with no password hash yet (hashing is slow, so the
    caller chooses where it happens)."""

    user: User
    # To hash: mapped from Customer.io, or generated; None leaves the password unusable. Never in a repr (a log line
    # or an error report that shows the object).
    password: str | None = field(repr=False)
    generated: bool  # generated here, so owed to Customer.io's Return Password field
    role_notice: str  # why the requested role was not used, when it was not
    filled_fields: list[str]  # the mapped fields Customer.io filled
    username_base: str  # the username the person would like (the user's may carry a suffix)
    return_password_on: bool = False  # Return Password is on (with or without a field)

    def activities(self, *, password_notice: bool = True) -> list[Activity]:
        """The lines that tell of the new user. `password_notice=False`: the caller reports users without a usable
        password together (see NoPasswordSummary), as an import of thousands does."""
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
        if self.password is None and password_notice:
            lines.append(Activity(self._no_password_message(), level=ActivityLog.Level.NOTICE, user=user))
        return lines

    @property
    def no_password_reason(self) -> str:
        return (
            "Return Password is on but no Customer.io field is chosen"
            if self.return_password_on
            else "no password is mapped and Return Password is off"
        )

    def _no_password_message(self) -> str:
        how = (
            "the welcome email's set-password link"
            if self.user.welcome_email_due
            else "a password reset (no welcome email is sent)"
        )
        return (
            f"{self.user.get_username()} has no usable password ({self.no_password_reason}): they can log in only "
            f"after {how}."
        )


@dataclass
class NoPasswordSummary:
    """New users without a usable password, told in one line instead of one per user (an import of 100,000)."""

    with_welcome_email: int = 0
    without_welcome_email: int = 0
    reason: str = ""

    def count(self, account: NewAccount) -> None:
        if account.password is not None:
            return
        self.reason = account.no_password_reason
        if account.user.welcome_email_due:
            self.with_welcome_email += 1
        else:
            self.without_welcome_email += 1

    def activity(self) -> Activity | None:
        total = self.with_welcome_email + self.without_welcome_email
        if not total:
            return None
        ways = []
        if self.with_welcome_email:
            ways.append(f"{self.with_welcome_email} through the welcome email's set-password link")
        if self.without_welcome_email:
            ways.append(f"{self.without_welcome_email} through a password reset (no welcome email is sent)")
        return Activity(
            f"{total} new user(s) have no usable password ({self.reason}): they can log in only after setting "
            f"one, {' and '.join(ways)}.",
            level=ActivityLog.Level.NOTICE,
            context={
                "users": total,
                "with_welcome_email": self.with_welcome_email,
                "without_welcome_email": self.without_welcome_email,
            },
        )


@dataclass
class PersonUpdate:
    """What applying a person's attributes did to an existing user (unsaved)."""

    fields: list[str]  # the user fields the attributes changed
    notices: list[str]
    dirty: bool  # something to save: a changed field, or a newly linked Customer.io id
    previous_role: Role | None = None  # the role before, when the attributes or the request changed it

    def role_activity(self, user: User) -> Activity | None:
        if self.previous_role is None:
            return None
        return Activity(
            f"Changed role of {user.get_username()} from {self.previous_role.name} to {user.role.name}",
            user=user,
            context={"role": user.role.slug, "previous_role": self.previous_role.slug},
        )


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
    previous_role = None
    if requested_role:
        role, why_not = rules.assignable_role(requested_role)
        if role is None:
            notices.append(f"{why_not} Role unchanged.")
        elif role.pk != user.role_id:
            previous_role = user.role
            user.role = role
            updated_fields.append("role")
    # Linking the Customer.io id is bookkeeping, not a field the journey changed: saved, not reported.
    adopted = adopt_cio_id(user, person, taken_cio_ids)
    return PersonUpdate(
        fields=updated_fields,
        notices=notices,
        dirty=adopted or bool(updated_fields),
        previous_role=previous_role,
    )


def person_email(person: dict, known_email: str = "") -> str:
    """The email a new user gets: the one the contact was named by, else Customer.io's identifier or attribute."""
    identifiers = person.get("identifiers") or {}
    attributes = person.get("attributes") or {}
    return (known_email or identifiers.get("email") or attributes.get("email") or "").strip()


def plan_new_account(
    person: dict,
    email: str,
    rules: AccountRules,
    *,
    requested_role: str = "",
    send_notification: bool = False,
    username: str | None = None,
    taken_cio_ids: Collection | None = None,
    generated_password: str | None = None,
) -> NewAccount:
    """The user the `add` rules create for a person: username (mapped user_login, else the username format),
    role (mapped role field, else the requested one, falling back to the default), welcome email flag, password
    (mapped user_pass; else generated when Return Password is on with a field; else unusable), mapped fields and
    the Customer.io id. `username`: one the caller already chose (see pick_usernames); `generated_password`: the
    one to use if a password is generated (the caller hashed it ahead)."""
    attributes = person.get("attributes") or {}
    values = mapped_values(attributes, rules.mappings)
    role, why_not = rules.assignable_role(values.get("role") or requested_role)
    username_base = new_username_base(person, email, rules)
    user = User(
        username=username or pick_usernames([username_base])[0],
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
        password, generated = generated_password or generate_password(), True
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
        username_base=username_base,
        return_password_on=rules.site_settings.return_password,
    )


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


def meta_log_context(attributes: dict, rules: AccountRules) -> dict:
    """The mapped attributes for the activity log, redacted (password attributes too, whatever their names)."""
    return redact(logged_values(attributes, rules.mappings), also=rules.secret_attributes)


def meta_log_message(loaded: dict) -> str:
    summary = ", ".join(f"{key}: {value}" for key, value in loaded.items())
    return f"Loaded meta data from Customer.io: {summary or '(nothing mapped)'}"
