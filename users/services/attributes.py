"""Customer.io attributes → user fields, through the site's field mappings, and user fields → attributes."""

from datetime import datetime

from settings_app.models import FieldMapping, cached_field_mappings

from ..emails import normalize_email
from ..models import User
from ..text import clean_text

NAME_MAX_LENGTH = 150


def pull_mappings() -> list[FieldMapping]:
    """The active mappings that write Customer.io attributes onto users (per-process copies, fresh within a second:
    read-only)."""
    return [mapping for mapping in cached_field_mappings() if mapping.active and mapping.pulls]


def push_mappings() -> list[FieldMapping]:
    """The active mappings that send user fields to Customer.io; never a password (the model refuses one, and an
    older row is skipped here too)."""
    return [
        mapping
        for mapping in cached_field_mappings()
        if mapping.active and mapping.pushes and mapping.user_field != "password"
    ]


def mapped_values(attributes: dict, mappings: list[FieldMapping]) -> dict[str, str]:
    """{user_field: value} for each active mapping whose attribute Customer.io sent (empty values included, so a
    cleared attribute clears the field). Values are cleaned of what no database stores (a NUL in a first name would
    otherwise fail every write for that person)."""
    values = {}
    for mapping in mappings:
        if mapping.cio_attribute in attributes and attributes[mapping.cio_attribute] is not None:
            values[mapping.user_field] = clean_text(str(attributes[mapping.cio_attribute]))
    return values


def logged_values(attributes: dict, mappings: list[FieldMapping]) -> dict[str, str]:
    """The mapped attributes by Customer.io name, for the activity log (the caller redacts them)."""
    return {
        m.cio_attribute: clean_text(value) if isinstance(value := attributes[m.cio_attribute], str) else value
        for m in mappings
        if m.cio_attribute in attributes
    }


def apply_profile_fields(user: User, values: dict[str, str]) -> tuple[list[str], list[str]]:
    """Write mapped names, email and meta onto `user` (unsaved). Username, password and role are not handled here:
    they follow account rules (creation only, never for existing users, assignable roles only).
    Returns (changed field names, notices)."""
    changed, notices = [], []
    for field_name in ("first_name", "last_name"):
        if field_name in values:
            value = values[field_name].strip()[:NAME_MAX_LENGTH]
            if getattr(user, field_name) != value:
                setattr(user, field_name, value)
                changed.append(field_name)
    if values.get("email", "").strip():
        new_email = values["email"].strip()
        if normalize_email(new_email) != normalize_email(user.email):
            taken = User.objects.filter(email_normalized=normalize_email(new_email)).exclude(pk=user.pk).exists()
            if taken:
                notices.append(f"Email not changed to {new_email}: another user has it.")
            else:
                user.email = new_email
                changed.append("email")
    meta = dict(user.meta or {})
    for field_name, value in values.items():
        if field_name.startswith("meta."):
            key = field_name.removeprefix("meta.")
            if meta.get(key) != value:
                meta[key] = value
                changed.append(field_name)
    user.meta = meta
    return changed, notices


def user_attributes(user: User, mappings: list[FieldMapping]) -> dict:
    """User fields -> Customer.io attributes through the mappings, the other way round: what the site would push.
    Never a password (the site only has its hash), and no empty values (they would delete the attribute)."""
    attributes = {}
    for mapping in mappings:
        field_name = mapping.user_field
        if field_name == "password":
            continue
        if field_name.startswith("meta."):
            value = (user.meta or {}).get(field_name.removeprefix("meta."))
        elif field_name == "role":
            value = user.role.slug if user.role_id else None
        else:
            value = getattr(user, field_name, None)
        if isinstance(value, datetime):
            value = int(value.timestamp())  # Customer.io takes dates as Unix timestamps
        if value not in (None, ""):
            attributes[mapping.cio_attribute] = value
    return attributes
