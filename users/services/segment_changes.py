"""Customer.io follows tags applied or removed on the site: the outbox (SegmentChange rows).

users.access.apply_tags / remove_tags write a row per user and tag in the transaction that changes the tags, and
wake the background worker (`manage.py webhook_worker`) once it commits; the worker's task sends what waits
(segment_sender.py).

Customer.io's segment reads lag its writes; while a change is on its way (and for TAG_CHANGE_SETTLE_SECONDS after
it was sent) `pending_changes` tells the readers of Customer.io (update_tags, cio_resync_tags) to keep the site's
version.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from cio import get_client
from cio.client import deadline_in

from ..models import SegmentChange, Tag, User
from ..tasks import send_segment_changes
from .segment_sender import due_changes
from .task_waking import wake_task


class NotAManualSegment(ValueError):
    """Customer.io changes only manual segments through its API; data-driven ones follow their conditions."""

    def __init__(self, tags: list[Tag]):
        self.tags = tags
        named = ", ".join(f'"{tag}" (segment {tag.segment_id})' for tag in tags)
        super().__init__(
            f"{named} {'is a data-driven segment' if len(tags) == 1 else 'are data-driven segments'} in Customer.io: "
            "only manual segments can be applied or removed from the site. Change the segment's conditions in "
            "Customer.io instead, or use a manual segment."
        )


def ensure_manual(tags: list[Tag]) -> None:
    """Refuse data-driven segments. A tag first seen through a webhook has no kind yet: ask Customer.io (one App
    API call per such tag, once: the kind is stored)."""
    unknown = [tag for tag in tags if not tag.kind]
    if unknown:
        client = get_client()
        for tag in unknown:
            segment = client.get_segment(tag.segment_id, deadline=deadline_in(settings.WEBHOOK_SYNC_DEADLINE))
            tag.kind = Tag.kind_from_segment_type(segment.get("type"))
            if tag.kind:
                Tag.objects.filter(pk=tag.pk).update(kind=tag.kind)
    refused = [tag for tag in tags if tag.kind != Tag.Kind.MANUAL]
    if refused:
        raise NotAManualSegment(refused)


def record(user: User, tags: list[Tag], action: str) -> None:
    """Queue the change for Customer.io, in the caller's transaction; the worker is woken once it commits."""
    if not tags:
        return
    SegmentChange.objects.bulk_create([SegmentChange(user=user, tag=tag, action=action) for tag in tags])
    transaction.on_commit(wake_worker)


def wake_worker() -> None:
    """Enqueue the sending task unless one already waits (2,500 calls of apply_tags make one task, not 2,500)."""
    wake_task(send_segment_changes)


@dataclass(frozen=True)
class Waiting:
    count: int
    oldest_created_at: datetime | None


def waiting_changes() -> Waiting:
    """Changes not sent to Customer.io yet (due, held by a worker or waiting for a retry), and when the oldest was
    made: one query on the (sent_at, next_attempt_at) index."""
    figures = SegmentChange.objects.filter(sent_at__isnull=True).aggregate(n=Count("pk"), oldest=Min("created_at"))
    return Waiting(figures["n"], figures["oldest"])


def wake_if_due() -> None:
    """For the worker's sweep: changes whose retry time came, or whose worker died, get a task again."""
    if due_changes(timezone.now()).exists():
        wake_worker()


# What the readers of Customer.io must not undo ---------------------------------------------------------------


def pending_changes(user_ids=None) -> dict[int, dict[int, str]]:
    """{user id: {tag id: "add" | "remove"}}: the site's latest change of each user's tag that Customer.io may
    not show yet (unsent, or sent less than TAG_CHANGE_SETTLE_SECONDS ago). `user_ids`: only those users."""
    settled_before = timezone.now() - timedelta(seconds=settings.TAG_CHANGE_SETTLE_SECONDS)
    rows = SegmentChange.objects.filter(Q(sent_at__isnull=True) | Q(sent_at__gte=settled_before))
    if user_ids is not None:
        rows = rows.filter(user_id__in=list(user_ids))
    latest: dict[int, dict[int, str]] = defaultdict(dict)
    for user_id, tag_id, action in rows.order_by("id").values_list("user_id", "tag_id", "action"):
        latest[user_id][tag_id] = action  # later rows win
    return dict(latest)
