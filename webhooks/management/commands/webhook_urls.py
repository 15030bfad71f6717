from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from webhooks.actions import webhook_urls


class Command(BaseCommand):
    help = "Print the webhook URL for each action (with the current access key), ready to paste into Customer.io."

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-url", help="The site's public base URL, e.g. https://mydomain.com (default: SITE_BASE_URL)."
        )

    def handle(self, *args, base_url=None, **options):
        if base_url is not None:
            parts = urlsplit(base_url.strip())
            # Refused rather than guessed: whether the site answers on https or http is the owner's to say, and a
            # URL without a scheme pasted into Customer.io is not called at all.
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise CommandError(
                    f"--base-url must start with https:// or http:// and name the host, e.g. https://mydomain.com "
                    f"(got {base_url!r})."
                )
        for action, url in webhook_urls(base_url).items():
            self.stdout.write(f"{action} {url}")
