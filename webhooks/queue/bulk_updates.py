"""`update` for a scanned batch in bulk: attributes, tags and activity lines of many users in one transaction.

A broadcast of queued updates spends ~25 ms a person one by one (the user's save, their tags, two activity lines,
their delivery's outcome, each its own statements). For the plain case — a known user, not a staff account, nothing
owed to them (password return, welcome email), already linked to this contact as it stands, whose mapped attributes
change only names and meta (no role, no email, no password) — the same writes are made for the whole batch at once:
the mapped fields through apply_person, saved with bulk_update (the User post_save receivers only follow role
changes, which never come here); tags through the resync's writer (bulk_tags.write_scanned_tags); the activity lines
through log_activities. Anything else is left to the one-by-one processing, which handles every case.
"""

import logging

from django.db import transaction

from users.emails import normalize_email
from users.models import ActivityLog, User
from users.services.accounts import AccountRules
from users.services.accounts.people import apply_person, meta_log_context, meta_log_message
from users.services.activity import Activity, log_activities
from users.services.attributes import mapped_values
from users.services.backfills.common import IN_LIST_LIMIT, batched
from users.services.contacts import person_cio_id

from ..actions import ActionName
from ..payload import WebhookOptions
from .bulk_tags import write_scanned_tags
from .claiming import ContactWork
from .holding import identity_settled, lock_and_hold, processed_since
from .people import BatchPeople, taken_cio_ids
from .planning import LocalUser, ReadMethod, ReadPlan

# The user fields the bulk path writes (from apply_person on a user whose role and email do not change).
BULK_FIELDS = ["first_name", "last_name", "meta", "cio_id"]

logger = logging.getLogger(__name__)


def bulk_update_people(works: list[ContactWork], plan: ReadPlan, people: BatchPeople, started: float) -> set[str]:
    """The scanned batch's plain `update` contacts written in bulk, their deliveries recorded, in one transaction
    holding the contacts' locks. Returns the keys of the contacts done; the caller processes the rest one by one."""
    if plan.method != ReadMethod.SCAN:
        return set()
    rules = AccountRules.load()
    candidates = {}
    for work in works:
        person = people.person_of(work)
        if work.action == ActionName.UPDATE and person is not None and _plain(work, person, plan, rules):
            candidates[work.key] = (work, person)
    if not candidates:
        return set()
    with transaction.atomic():
        held = lock_and_hold({key: work for key, (work, _) in candidates.items()}, plan)
        # A contact processed meanwhile (a later delivery, another worker) may have changed since the scan: one by
        # one, which reads for itself.
        fresher = processed_since(held, plan.started_at)
        chosen = {key: candidates[key] for key in held if key not in fresher}
        users = {}
        for chunk in batched([plan.users[key].pk for key in chosen], IN_LIST_LIMIT):
            users.update(User.objects.select_related("role").in_bulk(chunk))
        taken = taken_cio_ids([person for _, person in chosen.values()])
        done, changed, activities, fields = {}, [], [], {}
        for key, (work, person) in chosen.items():
            user = users.get(plan.users[key].pk)
            if user is None or not _still_plain(user, work, person, plan.users[key]):
                continue
            change = apply_person(user, person, rules, taken_cio_ids=taken)
            if change.previous_role is not None or "email" in change.fields:
                raise AssertionError("bulk update changed a role or an email")  # _plain rules both out
            if user.cio_id:
                taken.add(user.cio_id)  # two people of one batch never adopt one id
            if change.dirty:
                changed.append(user)
            loaded = meta_log_context(person.get("attributes") or {}, rules)
            activities.append(
                Activity(meta_log_message(loaded), user_id=user.pk, context=loaded, delivery_id=work.leading.pk)
            )
            for notice in change.notices:
                activities.append(
                    Activity(notice, level=ActivityLog.Level.NOTICE, user_id=user.pk, delivery_id=work.leading.pk)
                )
            done[key], fields[key] = work, change.fields
        if not done:
            return set()
        User.objects.bulk_update(changed, BULK_FIELDS, batch_size=IN_LIST_LIMIT)
        log_activities(ActivityLog.Source.WEBHOOK, activities)
        write_scanned_tags(done, plan, started, action=ActionName.UPDATE, updated_fields=fields)
    logger.info("Updated %d users in bulk (%d others one by one)", len(done), len(works) - len(done))
    return set(done)


def _plain(work: ContactWork, person: dict, plan: ReadPlan, rules: AccountRules) -> bool:
    """Whether the update is one the bulk path makes exactly as the one-by-one one would (checked again under the
    lock by _still_plain)."""
    user = plan.users.get(work.key)
    if user is None or user.protected or user.owed or not identity_settled(work.contact, user):
        return False
    if WebhookOptions.from_request(work.leading.body or {}, work.leading.query or {}).role:
        return False
    values = mapped_values(person.get("attributes") or {}, rules.mappings)
    for field_name, value in values.items():
        if field_name == "email":
            if value.strip() and normalize_email(value.strip()) != user.email_normalized:
                return False  # an email change: uniqueness and its notice, one by one
        elif field_name not in ("first_name", "last_name") and not field_name.startswith("meta."):
            return False  # role, password, anything else
    cio_id = person_cio_id(person)
    return not (cio_id and user.cio_id and cio_id != user.cio_id)  # a conflict is reported one by one


def _still_plain(user: User, work: ContactWork, person: dict, seen: LocalUser) -> bool:
    """Under the lock: still the user the plan saw, not a staff account, nothing owed."""
    if user.is_staff or user.is_superuser or user.password_return_due or user.welcome_email_due:
        return False
    if user.email_normalized != seen.email_normalized or user.cio_id != seen.cio_id:
        return False
    cio_id = person_cio_id(person)
    return not (cio_id and user.cio_id and cio_id != user.cio_id)
