"""`add` for a scanned batch of people new to the site with Return Password on, in bulk.

One by one, a new person costs ~20 ms of the worker's and the database's CPU beside their password's hash (~47 ms):
some thirty statements (lock, lookups, the user's insert in savepoints, tags, four activity lines, the return's
bookkeeping, the delivery's outcome) and one Track API call. On two cores that alone keeps a burst of adds well
under the machine's hashing speed. The plain case — an email contact whose person Customer.io returned, nobody on the
site holding their email or Customer.io id, a generated password already hashed on the pool — is written as the
import writes its users, a chunk at a time:

1. the chunk's hashes are awaited outside any transaction (the pool hashes the next chunks meanwhile);
2. one transaction holding the contacts' locks checks that they are still new and still this worker's, creates the
   users with bulk_create (marked as owed their password, the return claimed by this processing), their activity
   lines, and their tags through the resync's writer;
3. after the commit, one /api/v2/batch call returns the chunk's passwords (as the import does);
4. the deliveries are recorded: succeeded for the passwords Customer.io accepted, a retryable failure for those it
   refused (their users stay owed a return, which the retry settles with a fresh password, as one by one).

A chunk that meets a conflict on insert (somebody created one of them meanwhile) is left to the one-by-one
processing, which handles every case.
"""

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from cio import get_client
from cio.client import deadline_in
from users.emails import normalize_email
from users.models import ActivityLog, User
from users.services.accounts import AccountRules, ActionResult
from users.services.accounts.passwords import PASSWORD_RETURN_CLAIM, return_passwords_in_batch
from users.services.accounts.people import meta_log_context, meta_log_message, plan_new_account
from users.services.accounts.usernames import new_username_base, pick_usernames
from users.services.activity import Activity, log_activities
from users.services.attributes import mapped_values
from users.services.backfills.common import batched, held_identities
from users.services.contacts import ContactKind, lock_contacts, person_cio_id
from users.services.outbox import owe_login_links
from users.services.roles import add_role_groups
from users.services.tags import send_on_commit, send_tag_signals
from users.signals import user_imported, users_created_in_bulk

from ..actions import ActionName
from ..deliveries import record_successes
from ..payload import WebhookOptions
from ..processing import Outcome, failure
from .bulk_tags import write_tags
from .claiming import ContactWork
from .holding import processed_since, still_held
from .people import BatchPeople, taken_cio_ids
from .planning import LocalUser, ReadMethod, ReadPlan

logger = logging.getLogger(__name__)

# New users per transaction and per return call: small enough that the first chunk's hashes are ready soon and the
# last chunk, written after the last hash, is short; large enough that a chunk's statements are few a person.
CHUNK = 50
WEBHOOK = ActivityLog.Source.WEBHOOK


def bulk_add_new_people(
    works: list[ContactWork], plan: ReadPlan, people: BatchPeople, hashed_ahead: dict
) -> tuple[set[str], list]:
    """The batch's plain adds of new people created in bulk, chunk by chunk. Returns the keys of the contacts whose
    users were created here, and the (work, outcome) failures among them for the caller to record (a password
    Customer.io refused). The others created were recorded here as succeeded, but those whose lease was lost
    meanwhile: nobody records them here, the processing that took them over does. The contacts whose keys are not
    returned are left to the one-by-one processing."""
    if plan.method != ReadMethod.SCAN or not hashed_ahead:
        return set(), []
    rules = AccountRules.load()
    if not rules.returns_passwords:
        return set(), []
    candidates = []
    for work in works:
        person = people.person_of(work)
        if person is not None and _plain_new(work, person, plan, rules, hashed_ahead):
            candidates.append((work, person))
    done: set[str] = set()
    failed: list[tuple] = []
    for chunk in batched(candidates, CHUNK):
        started = time.monotonic()
        chunk = [(work, person) for work, person in chunk if _hashed(hashed_ahead[work.contact.lock_key])]
        created = _create(chunk, plan, rules, hashed_ahead) if chunk else {}
        if not created:
            continue
        refused = _return_passwords(created, rules)
        failed += [(created[key][0], outcome) for key, outcome in refused.items()]
        _record_created({key: entry for key, entry in created.items() if key not in refused}, started)
        # Done here whether recorded or not: a contact whose lease was lost meanwhile is another processing's now.
        done |= set(created)
    if done:
        logger.info("Created %d new users in bulk (%d others one by one)", len(done), len(works) - len(done))
    return done, failed


def _hashed(ahead) -> bool:
    """Wait for the hash here, never inside the transaction. One that failed (the pool broke) leaves its contact to
    the one-by-one processing, which reports the failure on its delivery."""
    try:
        ahead.encoded()
    except Exception:
        logger.exception("Hashing a generated password ahead failed")
        return False
    return True


def _plain_new(work: ContactWork, person: dict, plan: ReadPlan, rules: AccountRules, hashed_ahead: dict) -> bool:
    """Whether the add creates a user the bulk path makes exactly as the one-by-one one would: nobody on the site
    for the contact (as the plan found), a generated password hashed ahead (no password mapped)."""
    if work.action != ActionName.ADD or work.contact.kind != ContactKind.EMAIL or work.key in plan.users:
        return False
    if work.contact.lock_key not in hashed_ahead:
        return False
    return not mapped_values(person.get("attributes") or {}, rules.mappings).get("password")


def _still_new(chosen: dict, persons: dict) -> dict:
    """Under the locks: the contacts nobody on the site holds yet, by their email or the person's Customer.io id
    (somebody else, a synchronous webhook say, may have created them since the plan looked). Two contacts of the
    chunk naming one person (by email alone, and by email and cio_id: two contact keys) would insert one email twice
    and fail the whole chunk: only the first is kept, the others are left to one by one (which finds the user)."""
    emails = {key: normalize_email(work.contact.value) for key, work in chosen.items()}
    cio_ids = {key: cio_id for key in chosen if (cio_id := person_cio_id(persons[key]) or chosen[key].contact.cio_id)}
    taken_emails, taken_ids = held_identities(emails.values(), cio_ids.values())
    still_new = {}
    for key, work in chosen.items():
        cio_id = cio_ids.get(key)
        if emails[key] in taken_emails or (cio_id and cio_id in taken_ids):
            continue
        still_new[key] = work
        taken_emails.add(emails[key])
        if cio_id:
            taken_ids.add(cio_id)
    return still_new


def _create(chunk, plan, rules: AccountRules, hashed_ahead: dict) -> dict:
    """One transaction: the chunk's users, activity lines and tags. Returns {key: (work, account, tag names)}."""
    persons = {work.key: person for work, person in chunk}
    with transaction.atomic():
        chosen = {work.key: work for work, _ in chunk}
        lock_contacts([work.contact for work in chosen.values()])
        chosen = still_held(chosen)
        fresher = processed_since(chosen, plan.started_at)
        chosen = _still_new({key: work for key, work in chosen.items() if key not in fresher}, persons)
        if not chosen:
            return {}
        taken = taken_cio_ids([persons[key] for key in chosen])
        bases = [new_username_base(persons[key], work.contact.value, rules) for key, work in chosen.items()]
        claimed_until = timezone.now() + PASSWORD_RETURN_CLAIM
        accounts = {}
        for (key, work), username in zip(chosen.items(), pick_usernames(bases), strict=True):
            options = WebhookOptions.from_request(work.leading.body or {}, work.leading.query or {})
            ahead = hashed_ahead[work.contact.lock_key]
            account = plan_new_account(
                persons[key],
                work.contact.value,
                rules,
                requested_role=options.role,
                send_notification=options.send_notification,
                username=username,
                taken_cio_ids=taken,
                generated_password=ahead.password,
            )
            if not account.generated:
                continue  # cannot happen (_plain_new): left to the one-by-one processing
            user = account.user
            user.password = ahead.encoded()
            # This processing returns it right after the commit; nobody else may start another return meanwhile.
            user.password_return_claimed_until = claimed_until
            user.email_normalized = normalize_email(user.email)  # bulk_create skips save(), which fills these
            user.cio_id = user.cio_id or None
            if user.cio_id:
                taken.add(user.cio_id)  # two people of one chunk never adopt one id
            accounts[key] = account
        try:
            with transaction.atomic():
                User.objects.bulk_create([account.user for account in accounts.values()])
                owe_login_links([account.user for account in accounts.values()], created=True)
        except IntegrityError:
            # Somebody created one of them (or took a username) since we looked: one by one sorts it out.
            return {}
        add_role_groups([account.user for account in accounts.values()])
        activities = []
        for key, account in accounts.items():
            user, work = account.user, chosen[key]
            loaded = meta_log_context(persons[key].get("attributes") or {}, rules)
            lines = account.activities() + [Activity(meta_log_message(loaded), user=user, context=loaded)]
            for line in lines:
                line.delivery_id = work.leading.pk
            activities += lines
            plan.users[key] = LocalUser(
                user.pk, user.email, user.email_normalized, user.cio_id, protected=False, owed=True
            )
            send_on_commit(user_imported, user=user, delivery=work.leading)
        send_on_commit(users_created_in_bulk, users=[account.user for account in accounts.values()])
        log_activities(WEBHOOK, activities)
        done = {key: chosen[key] for key in accounts}
        names = write_tags(done, plan)
        # write_tags signals only users whose tags changed; one by one, every tag load sends tags_modified, so a new
        # user in no segment (whose tags, none before, did not change) gets it here.
        untagged = {account.user.pk: ([], []) for account in accounts.values() if not names[account.user.pk]}
        if untagged:
            transaction.on_commit(lambda: send_tag_signals(untagged))
    return {key: (work, accounts[key], names[accounts[key].user.pk]) for key, work in done.items()}


def _return_passwords(created: dict, rules: AccountRules) -> dict[str, Outcome]:
    """The chunk's generated passwords, returned with one /api/v2/batch call (as the import does). Returns the failed
    outcomes of those Customer.io did not take: their users stay owed a return, their deliveries are retried."""
    keys = list(created)
    accounts = [created[key][1] for key in keys]
    refused = return_passwords_in_batch(
        get_client(),
        rules,
        [(account.user, account.password) for account in accounts],
        source=WEBHOOK,
        deadline=deadline_in(settings.WEBHOOK_TASK_DEADLINE),
        delivery_ids=[created[key][0].leading.pk for key in keys],
        refuse_all_on_error=True,
    )
    detail = "Customer.io did not accept the returned password (refused in a batch)"
    return {keys[index]: failure(502, "upstream_error", detail, retryable=True) for index in refused}


def _record_created(created: dict, started: float) -> None:
    """The deliveries of the users whose passwords were returned, recorded as succeeded — those still held."""
    with transaction.atomic():
        held = still_held({key: work for key, (work, _, _) in created.items()})
        successes = []
        for key in held:
            work, account, names = created[key]
            result = ActionResult(
                ActionName.ADD, user=account.user, created=True, tags=names, updated_fields=account.filled_fields
            )
            successes.append((work.deliveries, result.as_dict(), account.user.pk))
        record_successes(successes, duration_ms=int((time.monotonic() - started) * 1000))
