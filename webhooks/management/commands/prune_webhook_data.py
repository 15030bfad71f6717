from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from users.models import ActivityLog, ContactLock
from webhooks.models import RefusedRequestWindow, WebhookDelivery, WorkerHeartbeat


class Command(BaseCommand):
    help = (
        "Delete finished webhook deliveries, activity log lines, finished task rows and refused-request counts older "
        "than --days."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30, help="keep this many days (default 30)")

    def handle(self, *args, days, **options):
        if days < 1:
            raise CommandError("--days must be at least 1")
        cutoff = timezone.now() - timedelta(days=days)
        # Waiting and in-progress deliveries are kept whatever their age: nothing accepted is dropped.
        deliveries, _ = WebhookDelivery.objects.filter(
            status__in=WebhookDelivery.FINISHED, received_at__lt=cutoff
        ).delete()
        log_lines, _ = ActivityLog.objects.filter(created_at__lt=cutoff).delete()
        tasks, _ = DBTaskResult.objects.filter(status__in=["SUCCESSFUL", "FAILED"], finished_at__lt=cutoff).delete()
        # One lock row per contact ever seen would grow without end; a lock is recreated the moment it is needed.
        locks, _ = ContactLock.objects.all().delete()
        # Every worker start has its own id: heartbeats of workers long gone would pile up.
        heartbeats, _ = WorkerHeartbeat.objects.filter(seen_at__lt=cutoff).delete()
        # Counts of refused requests, per address and hour: the cap keeps the table small, this keeps it current.
        refused, _ = RefusedRequestWindow.objects.filter(window_start__lt=cutoff).delete()
        self.stdout.write(
            f"Deleted {deliveries} deliveries, {log_lines} activity log lines, {tasks} task rows, "
            f"{heartbeats} worker heartbeats and {refused} refused-request rows older than {days} days, "
            f"and {locks} contact lock rows."
        )
