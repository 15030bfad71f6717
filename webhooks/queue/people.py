"""The people of a claimed batch: their attributes read 100 contacts a call rather than one call each."""

import logging
from dataclasses import dataclass, field

from django.conf import settings

from cio import get_client
from cio.app_api import ATTRIBUTES_BATCH_LIMIT
from cio.client import deadline_in
from cio.errors import CustomerIOError
from users.emails import customerio_email_key
from users.services.backfills.common import batched, held_identities
from users.services.contacts import Contact, ContactKind, person_cio_id

from ..actions import ACTIONS
from .claiming import ContactWork

logger = logging.getLogger(__name__)


@dataclass
class BatchPeople:
    """What the batch calls answered, by Customer.io's email key: the people found, and those asked for that
    Customer.io did not return."""

    found: dict[str, dict] = field(default_factory=dict)
    # Unknown to Customer.io: the absence is the answer (contact_not_found).
    unknown: set[str] = field(default_factory=set)

    def person_of(self, work: ContactWork) -> dict | None:
        """The person a delivery's body carries, else the one the batch read. None: the contact reads its own (it was
        not asked for, its call failed, or Customer.io does not know them)."""
        person = work.person
        if person is None and work.contact.kind == ContactKind.EMAIL:
            person = self.found.get(customerio_email_key(work.contact.value))
        return person

    def unknown_to_customerio(self, contact: Contact) -> bool:
        return contact.kind == ContactKind.EMAIL and customerio_email_key(contact.value) in self.unknown


def fetch_people(works: list[ContactWork]) -> BatchPeople:
    """Attributes of every email contact that needs them, 100 per call. A failed batch call is not fatal: each
    of its contacts then fetches (and retries) on its own."""
    wanted = [
        work.contact.value
        for work in works
        if ACTIONS[work.action].needs_person and work.contact.kind == ContactKind.EMAIL and work.person is None
    ]
    if len(wanted) < 2:
        return BatchPeople()
    found = {}
    asked = []
    for chunk in batched(wanted, min(settings.WEBHOOK_BATCH_SIZE, ATTRIBUTES_BATCH_LIMIT)):
        try:
            people = get_client().get_attributes_batch(chunk, deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE))
        except CustomerIOError as exc:
            logger.warning("Batch attributes call for %d contacts failed: %s", len(chunk), exc)
            continue
        asked += chunk
        for person in people:
            email = (person.get("identifiers") or {}).get("email") or (person.get("attributes") or {}).get("email")
            if email:
                found[customerio_email_key(email)] = person
    answered = BatchPeople()
    for key in map(customerio_email_key, asked):
        if key in found:
            answered.found[key] = found[key]
        else:
            answered.unknown.add(key)
    return answered


def taken_cio_ids(people: list[dict]) -> set[str]:
    """The Customer.io ids of these people that site users hold already."""
    return held_identities((), (person_cio_id(person) for person in people))[1]
