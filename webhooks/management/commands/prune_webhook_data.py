from datetime import timedelta

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from users.models import ActivityLog, ContactLock
from webhooks.models import CustomerIOCallHour, RefusedRequestWindow, WebhookDelivery, WorkerHeartbeat


class Command(BaseCommand):
    help = (
        "Delete finished webhook deliveries, activity log lines, finished task rows, refused-request counts, "
        "Customer.io call counts and login records older than --days, and failed-login counts past their cool-off."
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
        # Customer.io calls per hour (the admin overview's chart): a few rows an hour, kept as long as deliveries.
        call_hours, _ = CustomerIOCallHour.objects.filter(hour__lt=cutoff).delete()
        # django-axes deletes failed-login counts past their cool-off only when somebody next logs in (or fails
        # to); a burst of failures followed by silence would stay. Past the cool-off they lock nobody out.
        attempts, _ = AccessAttempt.objects.filter(
            attempt_time__lt=timezone.now() - settings.AXES_COOLOFF_TIME
        ).delete()
        logins, _ = AccessLog.objects.filter(attempt_time__lt=cutoff).delete()
        failure_logs, _ = AccessFailureLog.objects.filter(attempt_time__lt=cutoff).delete()
        self.stdout.write(
            f"Deleted {deliveries} deliveries, {log_lines} activity log lines, {tasks} task rows, "
            f"{heartbeats} worker heartbeats, {refused} refused-request rows, {call_hours} Customer.io call-count rows "
            f"and {logins + failure_logs} login records older than {days} days, {locks} contact lock rows and "
            f"{attempts} failed-login counts past their cool-off."
        )
