"""Tags written in bulk for a scanned batch: the update_tags contacts' tags through the resync's writer
(tag_resync.apply_memberships), their "Loaded tags" lines and their deliveries recorded, in one transaction under the
contacts' locks. bulk_updates and bulk_adds write their users' tags the same way."""

import time

from django.db import transaction

from users.models import ActivityLog, Tag, UserTag
from users.services.activity import Activity, log_activities
from users.services.backfills.common import IN_LIST_LIMIT, batched
from users.services.backfills.tag_resync import Memberships, apply_memberships

from ..actions import ActionName
from ..deliveries import record_successes
from .claiming import ContactWork
from .holding import identity_settled, lock_and_hold, processed_since
from .planning import ReadMethod, ReadPlan


def bulk_update_tags(works: list[ContactWork], plan: ReadPlan, started: float) -> set[str]:
    """Tags of the scanned batch's update_tags contacts (known users, not staff, nothing owed) written in bulk, and
    their deliveries recorded, in one transaction holding the contacts' locks. Returns the keys of the contacts
    done; the caller processes the rest one by one."""
    if plan.method != ReadMethod.SCAN:
        return set()
    chosen = {
        work.key: work
        for work in works
        if work.action == ActionName.UPDATE_TAGS
        and work.key in plan.users
        and not plan.users[work.key].protected
        and not plan.users[work.key].owed
        and identity_settled(work.contact, plan.users[work.key])
    }
    if not chosen:
        return set()
    with transaction.atomic():
        done = lock_and_hold(chosen, plan)
        if not done:
            return set()
        # A contact processed meanwhile for a delivery received after this batch was claimed (the synchronous
        # webhook, another worker) has tags read after every delivery here was received, maybe later than the
        # scan: they stay as they are.
        fresher = processed_since(done, plan.started_at)
        write_scanned_tags(done, plan, started, action=ActionName.UPDATE_TAGS, keep=fresher)
    return set(done)


def write_scanned_tags(done: dict, plan: ReadPlan, started: float, *, action: ActionName, updated_fields=None, keep=()):
    """Under the contacts' locks: the scan's tags for the users of `done` (but those in `keep`, left as they are),
    their "Loaded tags" lines and their deliveries recorded as succeeded with `action`'s result."""
    names = write_tags(done, plan, keep=keep)
    _record_done(done, plan, names, started, action, updated_fields or {})


def write_tags(done: dict, plan: ReadPlan, *, keep=()) -> dict[int, list[str]]:
    """Under the contacts' locks: the scan's tags for the users of `done` (but those in `keep`) and their "Loaded
    tags" lines. Returns each user's tag names, by user id."""
    user_ids = {plan.users[key].pk: key for key in done if key not in keep}
    by_segment: dict[int, set[int]] = {int(s["id"]): set() for s in plan.segments}
    for user_id, key in user_ids.items():
        for segment in plan.segments_by_key.get(key, []):
            by_segment[int(segment["id"])].add(user_id)
    outcome = apply_memberships(plan.segments, Memberships(set(user_ids), by_segment), log_changes=False)
    names = _tag_names([plan.users[key].pk for key in done])
    _log_loaded_tags(done, plan, names, outcome.changes)
    return names


def _tag_names(user_ids: list[int]) -> dict[int, list[str]]:
    names: dict[int, list[tuple]] = {user_id: [] for user_id in user_ids}
    for chunk in batched(user_ids, IN_LIST_LIMIT):
        rows = UserTag.objects.filter(user_id__in=chunk).values_list("user_id", "tag__name", "tag__segment_id")
        for user_id, name, segment_id in rows:
            names[user_id].append((name, segment_id))
    return {user_id: [name for name, _ in sorted(tags)] for user_id, tags in names.items()}


def _log_loaded_tags(done, plan: ReadPlan, names, changes) -> None:
    """The line a one-by-one update_tags writes, for each contact, naming its delivery."""
    tags = {tag.pk: str(tag) for tag in Tag.objects.all()}
    activities = []
    for key, work in done.items():
        user = plan.users[key]
        applied, removed = changes.get(user.pk, ([], []))
        activities.append(
            Activity(
                f"Loaded tags for {user.email}: {', '.join(names[user.pk]) or '(none)'}",
                user_id=user.pk,
                context={"applied": sorted(tags[pk] for pk in applied), "removed": sorted(tags[pk] for pk in removed)},
                delivery_id=work.leading.pk,
            )
        )
    log_activities(ActivityLog.Source.WEBHOOK, activities)


def _record_done(done, plan: ReadPlan, names, started: float, action: ActionName, updated_fields: dict) -> None:
    successes = []
    for key, work in done.items():
        user = plan.users[key]
        result = {
            "status": "ok",
            "action": action,
            "user_id": user.pk,
            "created": False,
            "tags": names[user.pk],
            "updated_fields": updated_fields.get(key, []),
        }
        successes.append((work.deliveries, result, user.pk))
    record_successes(successes, duration_ms=int((time.monotonic() - started) * 1000))
