from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count
from django.utils import timezone

from webhooks.health import queue_backlog
from webhooks.models import WebhookDelivery


class Command(BaseCommand):
    help = "Show webhook deliveries by status and the age of the oldest waiting one (for monitoring)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-age", type=float, help="exit non-zero when the oldest waiting delivery is older (seconds)"
        )

    def handle(self, *args, max_age=None, **options):
        counts = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status, _ in WebhookDelivery.Status.choices:
            self.stdout.write(f"{status:<11} {counts.get(status, 0)}")
        backlog = queue_backlog()
        age = backlog.oldest_age(timezone.now()) or 0.0
        self.stdout.write(f"oldest waiting: {age:.0f} s" if backlog.oldest_received_at else "oldest waiting: none")
        if max_age is not None and age > max_age:
            raise CommandError(f"the oldest waiting delivery is {age:.0f} s old: older than {max_age:g} s")
