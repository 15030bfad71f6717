"""`cio_pull_meta`: Customer.io attributes -> user fields, through the field mappings, 100 people per call."""

from django.db import IntegrityError, transaction

from cio import get_client
from cio.app_api import ATTRIBUTES_BATCH_LIMIT
from cio.client import CustomerIOClient

from ...emails import normalize_email
from ...models import ActivityLog, User
from ..accounts import AccountRules, apply_person, meta_log_context
from ..activity import Activity, log_activities, log_activity
from .common import BACKFILL, BackfillResult, Progress, batched, counting_calls, in_chunks, selected_users

SHOWN_MISSING = 10


def pull_meta(result: BackfillResult, *, emails: list[str] | None = None, progress: Progress | None = None) -> None:
    """Apply every user's (or the `emails` users') Customer.io attributes through the active field mappings, with
    the rules of the `update` webhook: names, email, meta and an assignable role; never username or password.

    Calls: one per 100 users — by cio_id for users linked to Customer.io, by email for the others."""
    progress = progress or Progress()
    client = get_client()
    client.require_credentials(app=True)
    rules = AccountRules.load()
    missing = _Missing()
    with counting_calls(result):
        users = selected_users(emails, result).select_related("role")
        label = result.wording("Pulling attributes", "Attributes that would be pulled")
        progress.stage(label, total=users.count(), unit="users")
        # A cio_id Customer.io no longer knows (their profile was merged into another): tried again by email, 100
        # such users a call.
        stale: list[User] = []
        for chunk in in_chunks(users.filter(cio_id__isnull=False), ATTRIBUTES_BATCH_LIMIT):
            stale += _pull(client, rules, chunk, "cio_id", result)
            if len(stale) >= ATTRIBUTES_BATCH_LIMIT:
                missing.add(_pull(client, rules, stale[:ATTRIBUTES_BATCH_LIMIT], "email", result))
                stale = stale[ATTRIBUTES_BATCH_LIMIT:]
            progress.advance(len(chunk))
        for chunk in in_chunks(users.filter(cio_id__isnull=True), ATTRIBUTES_BATCH_LIMIT):
            missing.add(_pull(client, rules, chunk, "email", result))
            progress.advance(len(chunk))
        for chunk in batched(stale, ATTRIBUTES_BATCH_LIMIT):
            missing.add(_pull(client, rules, chunk, "email", result))
    result.skipped += missing.count
    if missing.count:
        shown = ", ".join(missing.shown)
        more = f" and {missing.count - SHOWN_MISSING} more" if missing.count > SHOWN_MISSING else ""
        result.notes.append(f"{missing.count} user(s) not found in Customer.io, left as they were: {shown}{more}")
    if not result.dry_run:
        log_activity(
            BACKFILL,
            f"Pulled meta data from Customer.io: {result.updated} users updated, {result.unchanged} unchanged, "
            f"{missing.count} not found",
        )


class _Missing:
    """The users Customer.io did not return: counted, and the first few named (not a list of them all)."""

    def __init__(self):
        self.count = 0
        self.shown: list[str] = []

    def add(self, users: list[User]) -> None:
        self.count += len(users)
        self.shown += [user.email for user in users[: SHOWN_MISSING - len(self.shown)]]


def _pull(client: CustomerIOClient, rules: AccountRules, users: list[User], id_type: str, result) -> list[User]:
    """One attributes call for up to 100 users, applied in one transaction. Returns the users Customer.io did not
    return."""
    if id_type == "cio_id":
        people = client.get_attributes_batch([user.cio_id for user in users], "cio_id")
        found = {(person.get("identifiers") or {}).get("cio_id"): person for person in people}
    else:
        people = client.get_attributes_batch([user.email for user in users], "email")
        found = {normalize_email((person.get("identifiers") or {}).get("email") or ""): person for person in people}
    missing = []
    with transaction.atomic():
        person_cio_ids = [(person.get("identifiers") or {}).get("cio_id") for person in people]
        taken = set(User.objects.filter(cio_id__in=[c for c in person_cio_ids if c]).values_list("cio_id", flat=True))
        activities = []
        for user in users:
            person = found.get(user.cio_id if id_type == "cio_id" else user.email_normalized)
            if person is None:
                missing.append(user)
                continue
            change = apply_person(user, person, rules, taken_cio_ids=taken)
            if change.dirty and not _save(user, change.fields, activities, result):
                continue
            if change.fields:
                result.updated += 1
                activities.append(
                    Activity(
                        f"Pulled meta data from Customer.io for {user.email}: {', '.join(change.fields)} changed",
                        user=user,
                        context=meta_log_context(person.get("attributes") or {}, rules),
                    )
                )
                if (role_line := change.role_activity(user)) is not None:
                    activities.append(role_line)
            else:
                result.unchanged += 1
            activities += [Activity(notice, level=ActivityLog.Level.NOTICE, user=user) for notice in change.notices]
        if result.dry_run:
            transaction.set_rollback(True)
        else:
            log_activities(BACKFILL, activities)
    return missing


def _save(user: User, fields: list[str], activities: list[Activity], result) -> bool:
    if "email" not in fields:
        user.save()
        return True
    # Another user may take the address between the check and the save: only this user fails then.
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        result.failed += 1
        activities.append(
            Activity(
                f"Email of {user.get_username()} not changed to {user.email}: another user has it",
                level=ActivityLog.Level.ERROR,
                user=user,
            )
        )
        return False
    return True
