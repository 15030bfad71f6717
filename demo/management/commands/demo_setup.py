from django.core.management import call_command
from django.core.management.base import BaseCommand

from users.models import AccessRule, Role, Tag, User

DEMO_PASSWORD = "demo"  # noqa: S105 (the development demo's published login)
DEMO_LOGINS = ["ann@example.com", "bob@example.com", "dan@example.com"]
PAYMENT_FAILED = "Payment failed"


class Command(BaseCommand):
    help = (
        "Development only (make run): tags from the emulator's segments, demo logins for three demo contacts, and "
        "the lockout rule that sends people with the Payment failed tag away from /members/, and a webhook-assignable "
        "customer role."
    )

    def handle(self, *args, **options):
        call_command("cio_sync_segments", stdout=self.stdout, stderr=self.stderr)
        for email in DEMO_LOGINS:
            if not User.objects.filter(email_normalized=email).exists():
                User.objects.create_user(username=email, email=email, password=DEMO_PASSWORD)
        # The docs' `add … &role=customer` example; production seeds only `subscriber` and leaves other roles to
        # the site admin. get_or_create: a developer who unmarks it in the admin keeps their choice on the next run.
        Role.objects.get_or_create(slug="customer", defaults={"name": "Customer", "webhook_assignable": True})
        payment_failed = Tag.objects.filter(name=PAYMENT_FAILED).first()
        if payment_failed is not None:
            rule, created = AccessRule.objects.get_or_create(
                path="/members/",
                prefix=True,
                defaults={
                    "redirect_url": "/payment-failed/",
                    "message": "Your last payment failed: update your card to get back in.",
                },
            )
            if created:
                rule.tags_none.set([payment_failed])
        self.stdout.write(
            f"Demo logins (password {DEMO_PASSWORD!r}): {', '.join(DEMO_LOGINS)}. "
            "Pages: /members/, /members/start/, /vip/. Webhook-assignable role: customer."
        )
