"""Who a Customer.io contact is on this site, and the per-contact lock."""

from dataclasses import dataclass

from ..emails import normalize_email
from ..models import ContactLock, User


@dataclass(frozen=True)
class Contact:
    """A person as a webhook names them: by email (the usual `{"email": "{{customer.email}}"}`), or by Customer.io
    cio_id or id in workspaces that identify people that way."""

    kind: str  # "email" | "cio_id" | "id"
    value: str

    @classmethod
    def email(cls, email: str) -> "Contact":
        return cls("email", email.strip())

    @property
    def lock_key(self) -> str:
        value = normalize_email(self.value) if self.kind == "email" else self.value
        return f"{self.kind}:{value}"

    def __str__(self):
        return self.value


def find_user(contact: Contact) -> User | None:
    """The local user for a contact. Emails match through email_normalized (never email__iexact)."""
    if contact.kind == "email":
        return User.objects.select_related("role").filter(email_normalized=normalize_email(contact.value)).first()
    if contact.kind == "cio_id":
        return User.objects.select_related("role").filter(cio_id=contact.value).first()
    return None


def find_user_for_person(person: dict) -> User | None:
    """The local user for a person Customer.io returned: by cio_id, then by email."""
    identifiers = person.get("identifiers") or {}
    cio_id = identifiers.get("cio_id") or person.get("cio_id")
    if cio_id:
        user = User.objects.select_related("role").filter(cio_id=cio_id).first()
        if user:
            return user
    email = identifiers.get("email") or (person.get("attributes") or {}).get("email")
    if email:
        return User.objects.select_related("role").filter(email_normalized=normalize_email(email)).first()
    return None


def lock_contact(contact: Contact) -> None:
    """Hold the contact's lock until the surrounding transaction ends. Must be called inside transaction.atomic()."""
    lock_contacts([contact])


def lock_contacts(contacts: list[Contact]) -> None:
    """Hold the locks of many contacts, taken in key order so that two processes locking overlapping sets cannot
    deadlock. Must be called inside transaction.atomic()."""
    keys = sorted({contact.lock_key for contact in contacts})
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
