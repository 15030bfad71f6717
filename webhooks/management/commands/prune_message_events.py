from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from webhooks.models import MessageEvent

# Deleted a chunk at a time: one statement over months of events would hold its locks (SQLite: the whole database)
# for as long as it takes.
CHUNK = 5000


class Command(BaseCommand):
    help = (
        "Delete message events (Customer.io's reporting webhook) that happened more than --days ago. Events the "
        "worker has not processed yet are kept whatever their age."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=180, help="keep this many days (default 180)")

    def handle(self, *args, days, **options):
        if days < 1:
            raise CommandError("--days must be at least 1")
        cutoff = timezone.now() - timedelta(days=days)
        old = MessageEvent.objects.filter(occurred_at__lt=cutoff, processed_at__isnull=False)
        deleted = 0
        while True:
            chunk = list(old.order_by().values_list("pk", flat=True)[:CHUNK])
            if not chunk:
                break
            deleted += MessageEvent.objects.filter(pk__in=chunk).delete()[0]
        self.stdout.write(f"Deleted {deleted} message events older than {days} days.")
