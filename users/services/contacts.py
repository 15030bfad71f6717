"""Who a Customer.io contact is on this site, and the per-person lock.

Two rules meet here (see users/emails.py for the first):
- A site account has one email address, compared as `normalize_email` does (NFC, then lowercased): two addresses
  that differ only in Unicode normalisation look identical to a person and must log in to the same account, so the
  site never holds both (the unique email_normalized column).
- A Customer.io person is named by their cio_id, which never changes; their email may change, and Customer.io tells
  emails apart case-insensitively but byte for byte otherwise (NFC and NFD "josé@" are two people there).
So a webhook's user is found by cio_id first, then by email; a user linked to one cio_id is never handed to another
Customer.io person whose email merely normalises the same: that delivery fails (IdentityConflict, 422) instead of
merging two people into one account.
"""

import enum
from dataclasses import dataclass

from django.db import transaction

from ..emails import customerio_email_key, normalize_email
from ..models import ContactLock, User
from .activity import log_activity


class IdentityConflict(Exception):
    """The contact's person cannot be this site user, and no second user can have their email (422). The message
    names both sides and holds no secret."""


class ContactKind(enum.StrEnum):
    """Which identifier names a contact: stored as a delivery's contact_type, and the same words as Customer.io's
    id_type."""

    EMAIL = "email"
    CIO_ID = "cio_id"
    ID = "id"


@dataclass(frozen=True)
class Contact:
    """A person as a webhook names them: by email (the usual `{"email": "{{customer.email}}"}`), by email and cio_id
    together (recommended: `{"email": "{{customer.email}}", "cio_id": "{{customer.cio_id}}"}`), or by cio_id or id
    alone in workspaces that identify people that way."""

    kind: ContactKind
    value: str
    cio_id: str = ""  # the Customer.io id sent beside an email (kind EMAIL)

    @classmethod
    def email(cls, email: str) -> "Contact":
        return cls(ContactKind.EMAIL, email.strip())

    @classmethod
    def stored(cls, kind: str, value: str, key: str) -> "Contact":
        """The contact a webhook delivery recorded (contact_type, contact, contact_key): an email delivery whose key
        names a cio_id carried both."""
        cio_id_prefix = f"{ContactKind.CIO_ID}:"
        if kind == ContactKind.EMAIL and key.startswith(cio_id_prefix):
            return cls(kind, value, cio_id=key.removeprefix(cio_id_prefix))
        return cls(kind, value)

    @property
    def known_cio_id(self) -> str:
        return self.value if self.kind == ContactKind.CIO_ID else self.cio_id

    @property
    def known_email(self) -> str:
        return self.value if self.kind == ContactKind.EMAIL else ""

    @property
    def lock_key(self) -> str:
        """The one key that names the person (a delivery's contact_key, which the queue groups by): the cio_id when
        known — it survives an email change — else the email as Customer.io compares it."""
        return self.lock_keys[0]

    @property
    def lock_keys(self) -> list[str]:
        """Every identifier the contact carries, as lock keys, the person's own key first."""
        keys = []
        if self.known_cio_id:
            keys.append(f"{ContactKind.CIO_ID}:{self.known_cio_id}")
        if self.kind == ContactKind.EMAIL:
            keys.append(f"{ContactKind.EMAIL}:{customerio_email_key(self.value)}")
        elif self.kind != ContactKind.CIO_ID:
            keys.append(f"{self.kind}:{self.value}")
        return keys

    def __str__(self):
        return self.value


def _users():
    """Users for a lookup. Inside a transaction the found user's row is locked until it ends (on PostgreSQL; SQLite
    serialises every write transaction anyway): that row lock is what serialises one person's deliveries whichever
    identifier each carries — see lock_contacts. FOR NO KEY UPDATE, not FOR UPDATE: it still excludes another
    delivery's lock on the row, but not the KEY SHARE locks that foreign-key checks take at commit (an import writing
    the user's tags), which FOR UPDATE would turn into deadlocks."""
    users = User.objects.select_related("role")
    if transaction.get_connection().in_atomic_block:
        users = users.select_for_update(of=("self",), no_key=True)
    return users


def find_user(contact: Contact) -> User | None:
    """The local user for a contact: by cio_id when it carries one, then by email (through email_normalized, never
    email__iexact). Costs no Customer.io call."""
    if contact.known_cio_id:
        user = _users().filter(cio_id=contact.known_cio_id).first()
        if user is not None or contact.kind != ContactKind.EMAIL:
            return user
    if contact.kind == ContactKind.EMAIL:
        return _users().filter(email_normalized=normalize_email(contact.value)).first()
    return None


def person_cio_id(person: dict | None) -> str:
    person = person or {}
    return (person.get("identifiers") or {}).get("cio_id") or person.get("cio_id") or ""


def find_user_for_person(person: dict) -> User | None:
    """The local user for a person Customer.io returned: by cio_id, then by email."""
    cio_id = person_cio_id(person)
    if cio_id:
        user = _users().filter(cio_id=cio_id).first()
        if user:
            return user
    identifiers = person.get("identifiers") or {}
    email = identifiers.get("email") or (person.get("attributes") or {}).get("email")
    if email:
        return _users().filter(email_normalized=normalize_email(email)).first()
    return None


def settle_identity(user: User, contact: Contact, person: dict | None, *, source: str) -> list[str]:
    """Check that `user` is the contact's person and follow an email change, before anything else changes them.
    Returns the user fields changed (saved here).

    - The user is linked to another Customer.io person (another cio_id) than the contact's: IdentityConflict —
      found by an email that normalises like theirs, never merged into them.
    - Found by the contact's cio_id with another email than the contact's: the person's email changed in
      Customer.io, and so does the user's — unless another user has that address (IdentityConflict).
    - Not linked yet: linked to the contact's cio_id (nobody else holds it: they would have been found first).
    """
    cio_id = contact.known_cio_id or person_cio_id(person)
    if cio_id and user.cio_id and user.cio_id != cio_id:
        raise IdentityConflict(
            f"The site user {user.get_username()} with the email address {user.email} belongs to another "
            f"Customer.io person (cio_id {user.cio_id}), not to {contact} (cio_id {cio_id}). Not merged: "
            f"change one of the two emails, or clear the user's Customer.io id in the admin to relink them."
        )
    changed = []
    if contact.known_cio_id and not user.cio_id:
        user.cio_id = contact.known_cio_id
        changed.append("cio_id")
    email = contact.known_email
    if contact.known_cio_id and email and normalize_email(email) != user.email_normalized:
        holder = User.objects.filter(email_normalized=normalize_email(email)).exclude(pk=user.pk).first()
        if holder is not None:
            raise IdentityConflict(
                f"Customer.io person {contact.known_cio_id} now has the email address {email}, but another site "
                f"user ({holder.get_username()}) has it: {user.get_username()} keeps {user.email}."
            )
        previous, user.email = user.email, email
        changed.append("email")
        log_activity(
            source,
            f"Changed email of {user.get_username()} from {previous} to {email} (changed in Customer.io)",
            user=user,
            context={"previous_email": previous, "cio_id": contact.known_cio_id},
        )
    if changed:
        user.save(update_fields=changed)
    return [field for field in changed if field != "cio_id"]  # linking is bookkeeping, not a change to report


def lock_contact(contact: Contact) -> None:
    """Hold the contact's locks until the surrounding transaction ends. Must be called inside transaction.atomic().

    One person's deliveries may carry different identifiers (email only, cio_id only, both, or an old and a new
    email). Each delivery locks every identifier it carries (so two creations of one new person, or a rename and a
    creation with the new email, wait for each other); find_user then locks the user's row, which every delivery
    for an existing person reaches whichever identifier named them. The row lock is always the last lock taken, on
    one user, so no two deliveries wait on each other in a cycle."""
    lock_contacts([contact])


def lock_contacts(contacts: list[Contact]) -> None:
    """Hold the locks of many contacts, taken in key order so that two processes locking overlapping sets cannot
    deadlock. Must be called inside transaction.atomic()."""
    keys = sorted({key for contact in contacts for key in contact.lock_keys})
    # In slices of the one sorted list (SQLite caps a statement's parameters), so the order holds across slices.
    for start in range(0, len(keys), LOCK_SLICE):
        _lock_keys(keys[start : start + LOCK_SLICE])


LOCK_SLICE = 1000


def lock_name(name: str) -> None:
    """Hold a lock that names no contact (its prefix is no contact kind's, e.g. "queue:claim") until the surrounding
    transaction ends: a lock row beside the contacts' ones. Must be called inside transaction.atomic()."""
    _lock_keys([name])


def _lock_keys(keys: list[str]) -> None:
    # Lock rows are pruned now and then (prune_webhook_data); one deleted between our insert and our lock is simply
    # inserted again.
    for _ in range(3):
        ContactLock.objects.bulk_create([ContactLock(key=key) for key in keys], ignore_conflicts=True)
        locked = ContactLock.objects.select_for_update().filter(key__in=keys).order_by("key").values_list("key")
        if len(locked) == len(keys):
            return
    raise RuntimeError("Could not take the contact locks (their rows keep disappearing).")


def is_protected(user: User) -> bool:
    """Staff and superuser accounts are never changed by a webhook."""
    return user.is_staff or user.is_superuser
