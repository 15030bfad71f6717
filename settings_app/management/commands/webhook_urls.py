from django.core.management.base import BaseCommand

from settings_app.services import webhook_urls


class Command(BaseCommand):
    help = "Print the webhook URL for each action (with the current access key), ready to paste into Customer.io."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", help="The site's public base URL (default: SITE_BASE_URL).")

    def handle(self, *args, base_url=None, **options):
        for action, url in webhook_urls(base_url).items():
            self.stdout.write(f"{action} {url}")
