import os
import secrets

from django.core.management.base import BaseCommand

from users.models import User


class Command(BaseCommand):
    # `make run`'s: the hint below is in the development form.
    help = (
        "Make sure a superuser exists for the admin. Credentials come from ADMIN_USERNAME, ADMIN_EMAIL and "
        "ADMIN_PASSWORD; without ADMIN_PASSWORD a password is generated and printed once, at creation."
    )

    def handle(self, *args, **options):
        username = os.environ.get("ADMIN_USERNAME", "admin")
        email = os.environ.get("ADMIN_EMAIL", "admin@example.com")
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"Admin account '{username}' exists (password unchanged; "
                f'reset it with: make manage ARGS="changepassword {username}")'
            )
            return
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(f"Created admin account — username: {username}")
        if "ADMIN_PASSWORD" not in os.environ:
            # Shown once so a new user can log in; it is not stored anywhere in clear.
            self.stdout.write(f"                        password: {password}")
