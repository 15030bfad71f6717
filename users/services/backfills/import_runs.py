"""An import run's lifecycle on its ImportRun row: opened (new, or resumed where it stopped), its position and
counts saved with each step's users, a heartbeat that tells other processes it is alive, and closed with its
outcome. One live run per segment."""

from datetime import timedelta

from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from ...models import ActivityLog, ImportRun
from ..activity import log_activity
from .common import BACKFILL, BackfillError, BackfillResult

Status = ImportRun.Status
# A RUNNING run whose heartbeat is older than this belongs to a process that died.
STALE_AFTER = timedelta(minutes=2)
HEARTBEAT_EVERY = timedelta(seconds=30)
COUNTS = ("created", "updated", "unchanged", "skipped", "failed")


def open_run(segment_id: int, role, send_notification, *, resume: bool, dry_run: bool) -> ImportRun:
    now = timezone.now()
    running = ImportRun.objects.filter(segment_id=segment_id, status=Status.RUNNING)
    live = running.filter(heartbeat_at__gt=now - STALE_AFTER).first()
    if live is not None:
        raise BackfillError(
            f"An import of segment {segment_id} is running already (run {live.pk}, started {live.started_at:%c})."
        )
    if not dry_run:
        running.update(status=Status.INTERRUPTED, error="The process running it stopped.")
    if not resume:
        run = ImportRun(segment_id=segment_id, role=role or "", send_notification=bool(send_notification))
        if not dry_run:
            try:
                run.save()
            except IntegrityError:  # another process started one since our check
                raise BackfillError(f"An import of segment {segment_id} is running already.") from None
        return run
    run = ImportRun.objects.filter(segment_id=segment_id, status__in=ImportRun.RESUMABLE).first()
    if run is None:
        raise BackfillError(f"No unfinished import of segment {segment_id} to resume; run it without --resume.")
    if (role is not None and role != run.role) or (
        send_notification is not None and send_notification != run.send_notification
    ):
        raise BackfillError(
            f"--resume continues run {run.pk} with its own options (role={run.role or '(none)'}, "
            f"send notification={'yes' if run.send_notification else 'no'}); leave --role and --send-notification out."
        )
    if not dry_run:
        try:
            claimed = ImportRun.objects.filter(pk=run.pk, status=run.status).update(
                status=Status.RUNNING, heartbeat_at=now, error=""
            )
        except IntegrityError:  # another process started or resumed one since our check
            claimed = 0
        if not claimed:
            raise BackfillError(f"An import of segment {segment_id} is running already.")
        run.refresh_from_db()
    return run


class RunRecord:
    """Keeps an open run's row in step with this invocation's counts (a resumed run adds to its earlier ones)."""

    def __init__(self, run: ImportRun, result: BackfillResult):
        self.run = run
        self.result = result
        self.dry_run = result.dry_run
        self.base = {name: getattr(run, name) for name in (*COUNTS, "members_done")}
        self.base_calls = (run.app_api_calls, run.track_api_calls)
        self.last_beat = timezone.now()

    def _copy_counts(self, members_done: int) -> None:
        run = self.run
        run.members_done = self.base["members_done"] + members_done
        for name in COUNTS:
            setattr(run, name, self.base[name] + getattr(self.result, name))
        run.app_api_calls = self.base_calls[0] + self.result.app_calls
        run.track_api_calls = self.base_calls[1] + self.result.track_calls

    def save_position(self, position: tuple[str, int], members_done: int) -> None:
        """In the step's transaction: the start cursor of the membership page and the members of it done."""
        run = self.run
        run.cursor, run.page_offset = position
        self._copy_counts(members_done)
        run.heartbeat_at = self.last_beat = timezone.now()
        if not self.dry_run:
            run.save()

    def saved(self, members_done: int) -> bool:
        """Whether the run's row holds the position a step saves once it has done `members_done` members. A
        KeyboardInterrupt can land at any point, the moments after a step's commit included, so the database says
        whether the step was written."""
        try:
            saved = ImportRun.objects.filter(pk=self.run.pk).values_list("members_done", flat=True).first()
        except DatabaseError:
            return False  # the connection failed with the step: it was not written
        return saved == self.base["members_done"] + members_done

    def beat(self) -> None:
        """Tell other processes this run is alive, during long waits for password hashes."""
        now = timezone.now()
        if self.dry_run or now - self.last_beat < HEARTBEAT_EVERY:
            return
        ImportRun.objects.filter(pk=self.run.pk).update(heartbeat_at=now)
        self.last_beat = now

    def close(self, status: str, error: str, members_done: int) -> None:
        run = self.run
        run.status, run.error = status, error[:2000]
        self._copy_counts(members_done)
        run.finished_at = timezone.now() if status == Status.FINISHED else None
        if self.dry_run:
            return
        # Only the counts, status and calls: the position is the one the last committed step saved.
        run.save(
            update_fields=[
                "status",
                "error",
                "members_done",
                *COUNTS,
                "app_api_calls",
                "track_api_calls",
                "finished_at",
                "heartbeat_at",
            ]
        )
        log_activity(
            BACKFILL,
            f"Import of segment {run.segment_id} {run.get_status_display().lower()}: {self.result.counts()} "
            f"(this run so far: {run.members_done} members)",
            level=ActivityLog.Level.INFO if status in (Status.FINISHED, Status.PAUSED) else ActivityLog.Level.ERROR,
            context={"run": run.pk, "error": run.error},
        )
