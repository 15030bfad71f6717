"""Generated passwords for a batch's new people: hashed on every core, ahead of the processing."""

from users.emails import normalize_email
from users.services.accounts import AccountRules, generate_password
from users.services.backfills.common import held_identities
from users.services.contacts import ContactKind
from users.services.password_hashing import HashedAhead, shared_pool

from ..actions import ActionName
from .claiming import ContactWork


def hash_generated_passwords_ahead(works: list[ContactWork]) -> dict[str, HashedAhead]:
    """For a batch of `add`s of people new to the site with Return Password on: a generated password each, hashed
    from the claim on in the worker's process pool (one process per core) while the batch is read and processed —
    outside any transaction or lock, and at the machine's hashing speed rather than one hash at a time. Keyed by contact
    lock key; a hash the processing finds no use for (the user appeared meanwhile) is dropped. A lone `add` hashes
    its own on a thread (see accounts.add)."""
    checkable = (ContactKind.EMAIL, ContactKind.CIO_ID)  # an `id` alone cannot tell whether the site holds them
    adds = [work for work in works if work.action == ActionName.ADD and work.contact.kind in checkable]
    if len(adds) < 2 or not AccountRules.load().returns_passwords:
        return {}
    emails = {normalize_email(w.contact.known_email) for w in adds if w.contact.known_email}
    cio_ids = {w.contact.known_cio_id for w in adds if w.contact.known_cio_id}
    known_emails, known_cio_ids = held_identities(emails, cio_ids)
    new = [
        work
        for work in adds
        if work.contact.known_cio_id not in known_cio_ids
        and normalize_email(work.contact.known_email) not in known_emails
    ]
    if len(new) < 2:
        return {}
    pool = shared_pool()
    return {work.contact.lock_key: pool.hash_ahead(generate_password(), generated=True) for work in new}
