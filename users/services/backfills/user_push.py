"""`cio_push_users`: user fields -> Customer.io through the field mappings, in /api/v2/batch requests."""

from cio import get_client
from cio.track_api import identify_operation

from ...models import ActivityLog, User
from ..activity import Activity, log_activities, log_activity
from ..attributes import push_mappings, user_attributes
from .common import BACKFILL, BackfillError, BackfillResult, Progress, counting_calls, in_chunks, selected_users

# Users whose operations go to batch() together; it packs them into requests of up to 500 KB.
USERS_PER_BATCH = 5000


def push_users(result: BackfillResult, *, emails: list[str] | None = None, progress: Progress | None = None) -> None:
    """Send every user's (or the `emails` users') mapped fields to Customer.io. A person is named by their cio_id
    when the site knows it — so an email changed on the site changes that person's email — else by email. Updates
    only: nobody is created in Customer.io (as WP Fusion's pushes, with "_update": true).

    Calls: Track API batch requests, about one per 500 KB of operations."""
    progress = progress or Progress()
    client = get_client()
    client.require_credentials(track=True)
    mappings = push_mappings()
    if not mappings:
        raise BackfillError(
            "No active field mapping pushes: nothing to send (set a mapping's direction to Push or Both in the "
            "admin's Field mappings)."
        )
    with counting_calls(result):
        users = selected_users(emails, result).select_related("role")
        progress.stage(result.wording("Pushing users", "Users who would be pushed"), total=users.count(), unit="users")
        for chunk in in_chunks(users, USERS_PER_BATCH):
            _push(client, chunk, mappings, result)
            progress.advance(len(chunk))
    if not result.dry_run:
        log_activity(
            BACKFILL,
            f"Pushed users' mapped fields to Customer.io: {result.updated} sent, {result.failed} refused, "
            f"{result.skipped} skipped",
            context={"attributes": sorted({mapping.cio_attribute for mapping in mappings})},
        )


def _push(client, users: list[User], mappings, result: BackfillResult) -> None:
    operations, senders = [], []
    for user in users:
        attributes = user_attributes(user, mappings)
        if not attributes:
            result.skipped += 1
            continue
        identifiers = {"cio_id": user.cio_id} if user.cio_id else {"email": user.email}
        operations.append(identify_operation(identifiers, attributes))
        senders.append(user)
    if result.dry_run or not operations:
        result.updated += len(operations)
        return
    outcome = client.batch(operations)
    result.updated += outcome.sent
    result.failed += len(outcome.failures)
    log_activities(
        BACKFILL,
        [
            Activity(
                f"Customer.io refused the fields pushed for {senders[failure.index].email}: {failure.reason}",
                level=ActivityLog.Level.ERROR,
                user=senders[failure.index],
            )
            for failure in outcome.failures
        ],
    )
