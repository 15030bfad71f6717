"""`cio_sync_segments`: Customer.io's segments -> Tag rows, in one App API call."""

from collections import defaultdict

from django.db import transaction

from cio import get_client

from ...models import Tag, UserTag
from ..activity import log_activity
from ..tags import send_tag_signals, sync_tags
from .common import BACKFILL, BackfillResult, Progress, counting_calls


def sync_segments(result: BackfillResult, *, prune: bool = False, progress: Progress | None = None) -> None:
    """Create a Tag for each new segment and update changed names and kinds. Tags whose segment is gone from
    Customer.io are reported and kept (users keep them too) unless `prune`, which deletes them — and so removes
    them from their users, who get the tag signals."""
    progress = progress or Progress()
    client = get_client()
    client.require_credentials(app=True)
    with counting_calls(result):
        progress.stage("Reading segments")
        segments = client.list_segments()
    with transaction.atomic():
        sync = sync_tags(segments)
        result.created += len(sync.created)
        result.updated += len(sync.updated)
        result.unchanged += len(sync.tags) - len(sync.created) - len(sync.updated)
        gone = list(Tag.objects.exclude(segment_id__in=[tag.segment_id for tag in sync.tags]))
        if gone:
            listed = ", ".join(f"{tag} ({tag.segment_id})" for tag in gone)
            gone_text = f"{len(gone)} tag(s) whose segment is gone from Customer.io"
            if prune:
                _prune(gone)
                result.notes.append(
                    result.wording(f"{gone_text} deleted", f"{gone_text} would be deleted") + f": {listed}"
                )
            else:
                result.notes.append(
                    result.wording(f"{gone_text} kept", f"{gone_text} would be kept")
                    + f" (--prune deletes them): {listed}"
                )
        if result.dry_run:
            transaction.set_rollback(True)
            return
        log_activity(
            BACKFILL,
            f"Synced segments from Customer.io: {len(sync.created)} new, {len(sync.updated)} updated, "
            f"{len(gone)} gone{' (deleted)' if prune and gone else ''}",
            context={
                "created": [tag.segment_id for tag in sync.created],
                "updated": [tag.segment_id for tag in sync.updated],
                "gone": [tag.segment_id for tag in gone],
            },
        )


def _prune(gone: list[Tag]) -> None:
    changes: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for user_id, tag_id in UserTag.objects.filter(tag__in=gone).values_list("user_id", "tag_id"):
        changes[user_id][1].append(tag_id)
    Tag.objects.filter(pk__in=[tag.pk for tag in gone]).delete()
    # The deleted Tag objects keep their names in memory, for the tags_removed signal.
    transaction.on_commit(lambda: send_tag_signals(dict(changes), deleted_tags=gone))
