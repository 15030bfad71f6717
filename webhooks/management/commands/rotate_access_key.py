from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from settings_app import access_keys
from settings_app.models import WebhookSettings
from users.models import ActivityLog
from users.services.activity import log_activity


class Command(BaseCommand):
    help = (
        "Make a new webhook access key and print it; the old key keeps working for a grace period "
        "(WEBHOOK_KEY_GRACE_HOURS, 24 h by default). --end-grace ends every previous key's validity now."
    )

    def add_arguments(self, parser):
        parser.add_argument("--grace", type=float, metavar="HOURS", help="Hours the old key keeps working (0: none).")
        parser.add_argument("--end-grace", action="store_true", help="Previous keys stop working now; no new key.")

    def handle(self, *args, grace=None, end_grace=False, **options):
        site_settings = WebhookSettings.load()
        if end_grace:
            if grace is not None:
                raise CommandError("--end-grace takes no --grace.")
            ended = access_keys.end_grace(site_settings)
            log_activity(ActivityLog.Source.ADMIN, f"Grace period of {ended} previous access key(s) ended (shell).")
            self.stdout.write(f"Previous access keys ended: {ended}. Only the current key is valid now.")
            return
        if grace is not None and grace < 0:
            raise CommandError("--grace must be 0 or more hours.")
        new_key, old_until = access_keys.rotate(
            site_settings, access_keys.default_grace() if grace is None else timedelta(hours=grace)
        )
        until = old_until.isoformat(timespec="seconds") if old_until else "now (no grace period)"
        log_activity(
            ActivityLog.Source.ADMIN,
            f"Access key rotated from the shell; the previous key is valid until {until}.",
            level=ActivityLog.Level.NOTICE,
        )
        self.stdout.write(f"New access key: {new_key}")
        self.stdout.write(f"The previous key stops working: {until}")
